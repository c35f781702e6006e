"""`python -m catdog_lib`: the `catdog` command."""

import sys

from .cli import main

sys.exit(main())
