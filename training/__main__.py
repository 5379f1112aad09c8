"""`python -m training` is the `defect-classifier` command (training/cli.py)."""

import sys

from training.cli import main

sys.exit(main())
