"""Entry point of the one-file sitewatch-pusher executable (packaging/pyinstaller/sitewatch.spec).

The same as the `sitewatch-pusher` console script of the installed package: its exit status is main's.
"""

import sys

from pusher.cli import main

if __name__ == "__main__":
    sys.exit(main())
