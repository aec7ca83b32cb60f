"""`python -m jueju` runs the command line."""

import sys

from jueju.cli import main

sys.exit(main())
