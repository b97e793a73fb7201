"""Model registry: names of models shipped inside the package, and resolving a name or a path to a model dir.

A model dir (written by ``python -m espnet_kalle.pretrained.pack``) holds ``model.yaml`` naming its parts:
the LM's ESPnet config + weights, the Flow-VAE's config + weights, and a ``voices/`` folder of preset voices.
Nothing is ever downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Mapping, Union

PACKAGE_DIR = Path(__file__).resolve().parent
REGISTRY: Dict[str, Path] = {"mini-en": PACKAGE_DIR / "mini-en"}
# The language of a model dir without a ``lang`` in model.yaml: every model packed before the field was English.
DEFAULT_LANG = "en"
# A language code: ISO 639 (en, yue) with optional region/script subtags, "-" (BCP 47) or "_" (POSIX) separated.
_LANG_CODE = re.compile(r"[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*")


def check_lang(lang: Any) -> str:
    """``lang`` if it is a language code such as ``en``, ``en_US`` or ``pt-BR``, else a ValueError."""
    if not isinstance(lang, str) or not _LANG_CODE.fullmatch(lang):
        raise ValueError(f"lang must be a language code such as 'en', 'en_US' or 'pt-BR', not {lang!r}")
    return lang


def model_lang(meta: Mapping[str, Any]) -> str:
    """The language a model dir's model.yaml records (``lang``), validated; DEFAULT_LANG when it records none."""
    return check_lang(meta.get("lang", DEFAULT_LANG))


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
