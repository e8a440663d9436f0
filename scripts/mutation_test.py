"""Plant known bugs, one at a time, in a copy of the repository, and run the tests that claim
to cover each: a bug the tests miss "survived". The list and the machinery are in
tests/mutation/. Not part of CI: it is slow (minutes).

To run:
    python scripts/mutation_test.py               # every mutant
    python scripts/mutation_test.py -k checkpoint # those whose name contains "checkpoint"
    python scripts/mutation_test.py --baseline    # first check that the named tests pass
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from mutation.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
