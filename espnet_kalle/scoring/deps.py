"""Lazy imports for the optional scoring packages (the ``[score]`` extra).

Scorers import their package only when first used, so ``espnet_kalle.scoring`` imports on a bare install and a
missing package becomes one clear line in the report instead of a traceback halfway through a scoring run.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType
from typing import Optional

INSTALL_HINT = "not available (pip install espnet-kalle[score])"


class ScorerUnavailable(RuntimeError):
    """A scorer whose package (or model) is missing; ``str(e)`` is the line the report prints."""


def require(module: str, package: Optional[str] = None) -> ModuleType:
    """Import ``module`` or raise ``ScorerUnavailable`` naming the pip ``package`` that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # also a module set to None in sys.modules (how tests simulate a missing package)
        raise ScorerUnavailable(f"{package or module}: {INSTALL_HINT} [{e}]") from e


def version(package: str) -> str:
    """Installed version of a distribution, or "missing" (recorded in the report's environment section)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"
