"""Offline set-up for ESPnet's grapheme-to-phoneme front ends (``--token_type phn --g2p ...``).

ESPnet's espeak g2p (``espeak_ng_english_us_vits`` and the other ``espeak_ng_*`` names) runs through phonemizer,
which needs the espeak-ng shared library and its data. The ``espeakng-loader`` wheel carries both, so a pip install
is enough (no system package), and every machine phonemizes with the same espeak-ng release: a token list built on
one machine then matches the phonemes another machine makes at synthesis time. An espeak-ng the user names in
``PHONEMIZER_ESPEAK_LIBRARY`` wins.

ESPnet's phoneme tokenizer also imports ``g2p_en``, which calls ``nltk.download`` at import time whether or not it is
used. Nothing here may fetch data at run time, so that download is refused first.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)

LIBRARY_VARIABLE = "PHONEMIZER_ESPEAK_LIBRARY"
DATA_VARIABLE = "ESPEAK_DATA_PATH"


def refuse_nltk_downloads() -> None:
    """Make ``nltk.download`` a no-op that logs it (a g2p that needs NLTK data must have it installed).

    Logged at INFO, not printed: every phoneme model triggers it through ESPnet's import of g2p_en, even with an
    espeak g2p that needs no NLTK data; a g2p that does need the data fails later with nltk's own LookupError.
    """
    try:
        import nltk
    except ImportError:
        return

    def refuse(info_or_id=None, *args, **kwargs) -> bool:
        logger.info("not downloading NLTK data %r at run time (install it beforehand if a g2p needs it)",
                    info_or_id)
        return False

    nltk.download = refuse


def use_bundled_espeak() -> Optional[str]:
    """Point phonemizer at the espeak-ng of the ``espeakng-loader`` wheel, unless the user named one.

    Sets the environment (so ESPnet's worker processes inherit it) and returns the library in use, or None when
    neither the user nor the wheel provides one (phonemizer then looks for a system espeak-ng itself).
    """
    if os.environ.get(LIBRARY_VARIABLE):
        return os.environ[LIBRARY_VARIABLE]
    try:
        import espeakng_loader
    except ImportError:
        return None
    os.environ[LIBRARY_VARIABLE] = str(espeakng_loader.get_library_path())
    os.environ.setdefault(DATA_VARIABLE, str(espeakng_loader.get_data_path()))
    return os.environ[LIBRARY_VARIABLE]


def prepare_g2p(g2p: Optional[str]) -> None:
    """Everything ESPnet's tokenizer for ``g2p`` needs before it is built: no downloads, a findable espeak-ng."""
    refuse_nltk_downloads()
    if g2p and "espeak" in str(g2p):
        use_bundled_espeak()
