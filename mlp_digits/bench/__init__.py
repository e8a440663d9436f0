"""The benchmark: the ways to train this network, timed on the same data."""
