"""The language a packed model speaks: written once at packing, read one way by the library and every integration.

``model.yaml`` records it as ``lang`` (``kalle.sh --lang``, ``pack --lang``; checked by ``check_lang``); dirs made
before the field may name ``languages``/``language``, and a dir without any of them is English, which is what every
model before the field was. The integrations list codes as Home Assistant does (``en_US``, ``de``): language lower
case, region upper case, ``_`` between.
"""

from __future__ import annotations

import re
from typing import Any, List, Mapping, Optional

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


def normalize_language(code: str) -> str:
    """``en-us``, ``EN_US``, ``en-US`` -> ``en_US``; ``EN`` -> ``en``."""
    parts = str(code).strip().replace("-", "_").split("_")
    return "_".join([parts[0].lower(), *(part.upper() for part in parts[1:] if part)])


def model_languages(meta: Optional[Mapping[str, Any]]) -> List[str]:
    """The languages of a model from its ``model.yaml`` mapping (``synth.meta``), as the integrations list them:
    ``lang``, else the older ``languages``/``language``, else DEFAULT_LANG."""
    meta = meta or {}
    declared = model_lang(meta) if "lang" in meta else meta.get("languages") or meta.get("language") or DEFAULT_LANG
    codes = [declared] if isinstance(declared, str) else list(declared)
    return [normalize_language(code) for code in codes] or [DEFAULT_LANG]


def speaks(language: Optional[str], languages: List[str]) -> bool:
    """Whether a requested language is one of ``languages``: ``en``, ``en-US``, ``en_GB`` all match ``en_US``
    (same language; the region is an accent the model has or has not, not a reason to refuse)."""
    if not language:
        return False
    wanted = normalize_language(language).split("_")[0]
    return any(normalize_language(code).split("_")[0] == wanted for code in languages)
