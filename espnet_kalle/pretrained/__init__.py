"""Model registry: names of models shipped inside the package, and resolving a name or a path to a model dir.

A model dir (written by ``python -m espnet_kalle.pretrained.pack``) holds ``model.yaml`` naming its parts:
the LM's ESPnet config + weights, the Flow-VAE's config + weights, and a ``voices/`` folder of preset voices.
Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

PACKAGE_DIR = Path(__file__).resolve().parent
REGISTRY: Dict[str, Path] = {"mini-en": PACKAGE_DIR / "mini-en"}


def resolve_model_dir(name_or_path: Union[str, Path]) -> Path:
    """A registered name or a directory -> the model dir; a clear error when neither holds a model."""
    candidate = Path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in REGISTRY:
        candidate = REGISTRY[name_or_path]
        if not (candidate / "model.yaml").is_file():
            raise FileNotFoundError(
                f"the embedded model {name_or_path!r} is not in this installation ({candidate} has no model.yaml)"
            )
        return candidate
    if not candidate.exists():
        known = ", ".join(sorted(REGISTRY))
        raise FileNotFoundError(f"no model named {str(name_or_path)!r}: not a directory, and not one of: {known}")
    if not (candidate / "model.yaml").is_file():
        raise FileNotFoundError(f"{candidate} is not a kalle model dir (no model.yaml); pack one with "
                                "python -m espnet_kalle.pretrained.pack")
    return candidate
