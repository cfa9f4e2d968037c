"""``python -m ferroloop``: see :mod:`ferroloop.cli`."""

import sys

from ferroloop.cli import main

if __name__ == '__main__':
    sys.exit(main())
