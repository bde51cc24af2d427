"""Acceleration strategies for image and video denoisers (the `denoiser` domain of the registry).

Each strategy module registers itself in `registry` when imported; importing this package imports them.
"""

from . import bac, hyca, taocache, taylorseer  # noqa: F401  (each registers its strategy)
