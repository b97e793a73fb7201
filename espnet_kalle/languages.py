"""The language a packed model speaks, read one way for every integration.

``model.yaml`` may name it as ``lang`` (one code, or a list), or as ``languages``/``language``; a model dir without
any of them is English (``en_US``), which is what every model before the field was. Codes are written as Home
Assistant lists them (``en_US``, ``de``): language lower case, region upper case, ``_`` between.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

DEFAULT_LANGUAGE = "en_US"


def normalize_language(code: str) -> str:
    """``en-us``, ``EN_US``, ``en-US`` -> ``en_US``; ``EN`` -> ``en``."""
    parts = str(code).strip().replace("-", "_").split("_")
    return "_".join([parts[0].lower(), *(part.upper() for part in parts[1:] if part)])


def model_languages(meta: Optional[Mapping[str, Any]]) -> List[str]:
    """The languages of a model from its ``model.yaml`` mapping (``synth.meta``); ``[en_US]`` when it names none."""
    meta = meta or {}
    declared = meta.get("lang") or meta.get("languages") or meta.get("language") or DEFAULT_LANGUAGE
    codes = [declared] if isinstance(declared, str) else list(declared)
    return [normalize_language(code) for code in codes] or [DEFAULT_LANGUAGE]


def speaks(language: Optional[str], languages: List[str]) -> bool:
    """Whether a requested language is one of ``languages``: ``en``, ``en-US``, ``en_GB`` all match ``en_US``
    (same language; the region is an accent the model has or has not, not a reason to refuse)."""
    if not language:
        return False
    wanted = normalize_language(language).split("_")[0]
    return any(normalize_language(code).split("_")[0] == wanted for code in languages)
