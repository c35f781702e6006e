"""`python -m catdog_lib`: the `catdog` command."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a spawned worker process (Windows, macOS) re-imports the main module
    sys.exit(main())
