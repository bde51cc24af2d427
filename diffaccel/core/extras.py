"""Optional dependencies: imaging, plotting and terminal tables are extras (`pip install "diffaccel[compare]"`),
so that the acceleration library itself needs only torch and diffusers. `require` imports one and, when it is
missing, says which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

#: extra -> what it adds (the packages themselves are listed in pyproject.toml)
EXTRAS = {
    "zoo": "the reference zoo's training data and manifests (scikit-image)",
    "compare": "diffaccel compare and the generation scripts: metrics, tables, plots, image and video files "
    "(scikit-image, rich, matplotlib, imageio)",
}


def require(module: str, extra: str) -> ModuleType:
    """`importlib.import_module(module)`, or an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise ImportError(
            f"{package} is not installed; it comes with diffaccel's '{extra}' extra ({EXTRAS[extra]}): "
            f'pip install "diffaccel[{extra}]"  (from a checkout: pip install -e ".[{extra}]")'
        ) from error
