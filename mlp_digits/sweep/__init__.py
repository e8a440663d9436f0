"""Many networks at once: the grid, the stacks that train them, the report."""
