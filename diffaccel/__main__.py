"""`python -m diffaccel ...` (and `accelerate launch -m diffaccel compare ...`): the `diffaccel` command."""

import sys

from .cli import main

sys.exit(main())
