"""Model registry: names of models shipped inside the package, and resolving a name or a path to a model dir.

A model dir (written by ``python -m espnet_kalle.pretrained.pack``) holds ``model.yaml`` naming its parts:
the LM's ESPnet config + weights, the Flow-VAE's config + weights, and a ``voices/`` folder of preset voices.
Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import yaml

from espnet_kalle.errors import ModelInvalid, ModelNotFound
from espnet_kalle.languages import model_lang

PACKAGE_DIR = Path(__file__).resolve().parent
REGISTRY: Dict[str, Path] = {"mini-en": PACKAGE_DIR / "mini-en"}
FORMAT = "espnet-kalle/1"  # model.yaml ``format`` that ``pack`` writes and this version reads
PARTS = ("lm_config", "lm_model", "codec_config", "codec_model")  # files a model.yaml must name


def resolve_model_dir(name_or_path: Union[str, Path]) -> Path:
    """A registered name or a directory -> the model dir; a clear error when neither holds a model."""
    candidate = Path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in REGISTRY:
        candidate = REGISTRY[name_or_path]
        if not (candidate / "model.yaml").is_file():
            raise ModelNotFound(
                f"the embedded model {name_or_path!r} is not in this installation ({candidate} has no model.yaml)"
            )
        return candidate
    if not candidate.exists():
        known = ", ".join(sorted(REGISTRY))
        raise ModelNotFound(f"no model named {str(name_or_path)!r}: not a directory, and not one of: {known}")
    if not (candidate / "model.yaml").is_file():
        raise ModelNotFound(f"{candidate} is not a kalle model dir (no model.yaml); pack one with "
                                "python -m espnet_kalle.pretrained.pack")
    return candidate


def read_model_meta(root: Path) -> Dict[str, Any]:
    """``root/model.yaml`` checked before any weights load: a mapping of this version's ``format`` naming the
    four parts (files that exist inside the dir), with a valid ``lang``; otherwise ``ModelInvalid`` naming what is
    wrong (``ModelNotFound`` for a part that is missing)."""
    path = root / "model.yaml"
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelInvalid(f"{path} is not readable YAML: {first}") from error
    if not isinstance(meta, dict):
        raise ModelInvalid(f"{path} must be a mapping of fields (format, name, lm_config, ...), got "
                           f"{type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ModelInvalid(f"{path}: format is {meta.get('format')!r}, this version reads {FORMAT!r} (a model dir "
                           "written by python -m espnet_kalle.pretrained.pack)")
    for key in PARTS:
        value = meta.get(key)
        if not isinstance(value, str) or not value:
            raise ModelInvalid(f"{path}: {key} must name a file of the model dir, got {value!r}")
        if not (root / value).is_file():
            raise ModelNotFound(f"{path}: {key} {value!r} is missing from {root}")
    for key in ("name", "voices_dir", "default_voice"):
        if key in meta and not isinstance(meta[key], str):
            raise ModelInvalid(f"{path}: {key} must be a string, got {meta[key]!r}")
    if "int8_lm" in meta and not isinstance(meta["int8_lm"], bool):
        raise ModelInvalid(f"{path}: int8_lm must be true or false, got {meta['int8_lm']!r}")
    try:
        model_lang(meta)
    except ValueError as error:
        raise ModelInvalid(f"{path}: {error}") from error
    return meta
