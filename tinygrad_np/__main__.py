"""``python -m tinygrad_np``: the same command line as ``tinygrad-np``."""

import sys

from tinygrad_np.cli import main

if __name__ == "__main__":
    sys.exit(main())
