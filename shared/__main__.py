"""``python -m shared …``: the command line (``shared.frontends.cli``)."""

import sys

from shared.frontends.cli import main

if __name__ == "__main__":
    sys.exit(main())
