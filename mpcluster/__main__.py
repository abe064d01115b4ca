"""``python3 -m mpcluster <command>``: the command line lives in ``mpcluster.cli``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
