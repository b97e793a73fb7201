"""The voices this server offers, and the Info that Describe answers (what Home Assistant lists).

Voices are the model's presets plus saved cloned/adapted voices (``*.voice.pt``) from ``--voices-dir``. Clients
select them by name only: a name from the network is never turned into a file path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Union

import yaml
from wyoming.info import Attribution, Info, TtsProgram, TtsVoice
from wyoming.tts import SynthesizeVoice

from espnet_kalle.pretrained import resolve_model_dir
from espnet_kalle.synthesizer import KalleSynthesizer
from espnet_kalle.voice import Voice, load_voice_dir

from . import __version__

_LOGGER = logging.getLogger(__name__)

ATTRIBUTION = Attribution(name="KALL-E (espnet-kalle)", url="https://arxiv.org/abs/2412.16846")
DEFAULT_LANGUAGES = ["en_US"]


class UnknownVoice(KeyError):
    """A voice name (or language) this server does not have."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


@dataclass
class VoiceBook:
    """Name -> Voice for everything the server offers, plus the default for requests that name none."""

    voices: Dict[str, Voice]
    default: str
    languages: List[str]

    def resolve(self, requested: Optional[SynthesizeVoice]) -> Voice:
        """The voice a Synthesize asks for; UnknownVoice for names or languages we do not have."""
        if requested is None or (requested.name is None and requested.language is None):
            return self.voices[self.default]
        if requested.name is not None:
            if requested.name not in self.voices:
                raise UnknownVoice(f"unknown voice {requested.name!r}; voices: {', '.join(sorted(self.voices))}")
            return self.voices[requested.name]
        if _language_matches(requested.language, self.languages):
            return self.voices[self.default]
        raise UnknownVoice(f"language {requested.language!r} is not supported; languages: "
                           f"{', '.join(self.languages)}")


def _language_matches(language: Optional[str], languages: List[str]) -> bool:
    """'en', 'en-US' and 'en_US' all match en_US."""
    wanted = (language or "").replace("-", "_").lower()
    return any(wanted in (code.lower(), code.lower().split("_")[0]) for code in languages)


def model_languages(model: Union[str, Path]) -> List[str]:
    """Languages from the model dir's ``model.yaml`` (``languages: [..]`` or ``language: ..``), else en_US."""
    try:
        meta = yaml.safe_load((resolve_model_dir(model) / "model.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return list(DEFAULT_LANGUAGES)
    languages = meta.get("languages") or meta.get("language") or DEFAULT_LANGUAGES
    return [languages] if isinstance(languages, str) else [str(code) for code in languages]


def load_voice_book(synth: KalleSynthesizer, voices_dir: Optional[Path] = None, default: Optional[str] = None,
                    languages: Optional[List[str]] = None) -> VoiceBook:
    """Presets first; a saved voice whose name clashes with a preset is skipped (names must stay unambiguous)."""
    voices: Dict[str, Voice] = dict(synth.voices)
    if voices_dir is not None:
        if not voices_dir.is_dir():
            raise FileNotFoundError(f"--voices-dir {voices_dir} is not a directory")
        for voice in load_voice_dir(voices_dir):
            if voice.name in voices:
                _LOGGER.warning("skipping saved voice %r from %s: the name is taken", voice.name, voices_dir)
                continue
            voices[voice.name] = voice
    if not voices:  # a model without presets (no speaker encoder) still speaks with seed 0
        voices["default"] = replace(synth.voice(0), name="default", description="the model's own voice")
    default = default or synth.default_voice or next(iter(voices))
    if default not in voices:
        raise UnknownVoice(f"--voice {default!r} is not available; voices: {', '.join(sorted(voices))}")
    return VoiceBook(voices, default, list(languages or DEFAULT_LANGUAGES))


def describe_voice(voice: Voice) -> str:
    """Short, because Home Assistant shows the description as the voice's name."""
    return f"{voice.name} ({voice.kind})"


def build_info(book: VoiceBook, model_name: str, streaming: bool = True) -> Info:
    voices = [
        TtsVoice(name=voice.name, description=describe_voice(voice), attribution=ATTRIBUTION, installed=True,
                 version=__version__, languages=list(book.languages))
        for voice in sorted(book.voices.values(), key=lambda v: v.name)
    ]
    program = TtsProgram(name="kalle", description=f"KALL-E text to speech ({model_name})",
                         attribution=ATTRIBUTION, installed=True, version=__version__, voices=voices,
                         supports_synthesize_streaming=streaming)
    return Info(tts=[program])
