"""`python -m mnist_digits` runs the command line."""

import sys

from mnist_digits.cli import main

sys.exit(main())
