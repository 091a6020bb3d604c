"""Entry point of the one-file sitewatch-exporter executable (packaging/pyinstaller/sitewatch.spec).

The same as the `sitewatch-exporter` console script of the installed package: its exit status is main's.
"""

import sys

from exporter.cli import main

if __name__ == "__main__":
    sys.exit(main())
