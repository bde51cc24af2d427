"""Model-family adapters: which sub-modules of a model are cache units. Data, not code paths.

`registry` holds the table; `diffusers_models` registers the built-in families when this package is imported.
"""

from . import (
    diffusers_models,  # noqa: F401  (registers the built-in adapters)
    policy_models,  # noqa: F401  (structural adapters for diffusion policies)
)
