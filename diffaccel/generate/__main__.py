"""``python -m diffaccel.generate MODEL [options]``: the same run as ``pipelines/<model>.py``."""

from .cli import main

raise SystemExit(main())
