"""espnet-kalle: KALL-E as an ESPnet plugin.

Attributes load lazily so ``import espnet_kalle`` stays cheap (no torch/ESPnet import until used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"
_LAZY = {
    "register": "espnet_kalle.tasks.registry:register",
    "KalleSynthesizer": "espnet_kalle.synthesizer:KalleSynthesizer",
    "Voice": "espnet_kalle.voice:Voice",
    "FlowVAE": "espnet_kalle.codec.flow_vae:FlowVAE",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'espnet_kalle' has no attribute {name!r}")
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
