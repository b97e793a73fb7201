"""Add espnet-kalle's models to ESPnet's stock tasks (ESPnet has no plugin entry points).

ESPnet picks a model class by name from ``ClassChoices.classes`` dicts that live in its task modules
(``espnet2.tasks.gan_codec.codec_choices`` ...). Registering means adding our classes to those dicts before a
task builds its parser, which ``python -m espnet_kalle.run -m espnet2.bin.<module>`` does for the stock entry
points. One row of ``CHOICES`` per model: adding a model is one line.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Iterable, List, NamedTuple, Optional


class Choice(NamedTuple):
    task: str  # espnet2.tasks.<task>
    choices: str  # the ClassChoices attribute of that module
    name: str  # the value of --<choices name>, lower case
    target: str  # "module:Class"
    optional: bool = False  # skip silently while the module does not exist yet


CHOICES: List[Choice] = [
    Choice("gan_codec", "codec_choices", "flow_vae", "espnet_kalle.codec.espnet_model:FlowVAECodec"),
    Choice("tts", "tts_choices", "kalle", "espnet_kalle.tts.kalle:KallE", optional=True),
]


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def register(tasks: Optional[Iterable[str]] = None) -> List[str]:
    """Register our classes with ESPnet (idempotent). ``tasks`` limits it to e.g. ``["gan_codec"]``.

    Returns the "task:name" entries registered. Imports only the task modules concerned (``espnet2.tasks.tts``
    alone takes ~10 s to import). First makes ESPnet's text front ends work offline: NLTK downloads are refused
    (importing the tasks imports g2p_en, which would download) and phonemizer finds the pip-installed espeak-ng
    (for ``--g2p espeak_ng_*``; ``espnet_kalle.g2p``).
    """
    from espnet_kalle.g2p import refuse_nltk_downloads, use_bundled_espeak

    refuse_nltk_downloads()
    use_bundled_espeak()
    wanted = None if tasks is None else set(tasks)
    done = []
    for choice in CHOICES:
        if wanted is not None and choice.task not in wanted:
            continue
        module_name, class_name = choice.target.split(":")
        if choice.optional and not _module_exists(module_name):
            continue
        cls = getattr(importlib.import_module(module_name), class_name)
        class_choices = getattr(importlib.import_module(f"espnet2.tasks.{choice.task}"), choice.choices)
        current = class_choices.classes.get(choice.name)
        if current is not None and current is not cls:
            raise RuntimeError(
                f"espnet2.tasks.{choice.task}.{choice.choices} already maps {choice.name!r} to "
                f"{current.__module__}.{current.__qualname__}; refusing to replace it with {choice.target}"
            )
        if class_choices.base_type is not None and not issubclass(cls, class_choices.base_type):
            raise TypeError(f"{choice.target} must subclass {class_choices.base_type.__name__}")
        class_choices.classes[choice.name] = cls
        done.append(f"{choice.task}:{choice.name}")
    return done


def known_tasks() -> List[str]:
    return sorted({c.task for c in CHOICES})
