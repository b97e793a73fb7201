"""The voices this server offers, and the Info that Describe answers (what Home Assistant lists).

Voices are the model's presets plus, from ``--voices-dir``, saved cloned/adapted voices (``*.voice.pt``) and
reference recordings (``NAME/ref.wav`` + ``NAME/ref.txt``, its transcript), cloned once at start. Clients select
voices by name only: a name from the network is never turned into a file path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice
from wyoming.tts import SynthesizeVoice

from espnet_kalle.errors import InputError, UnknownVoiceError
from espnet_kalle.languages import model_languages, speaks
from espnet_kalle.synthesizer import KalleSynthesizer
from espnet_kalle.voice import Voice, load_voice_dir

from . import __version__

_LOGGER = logging.getLogger(__name__)

ATTRIBUTION = Attribution(name="KALL-E (espnet-kalle)", url="https://arxiv.org/abs/2412.16846")
REFERENCE_AUDIO, REFERENCE_TEXT = "ref.wav", "ref.txt"


class UnknownVoice(UnknownVoiceError):
    """A voice name (or language) this server does not have."""


class UnknownSpeaker(UnknownVoice):
    """A request named a speaker: no voice here has speakers (Info lists none), each voice is one speaker."""


@dataclass
class VoiceBook:
    """Name -> Voice for everything the server offers, plus the default for requests that name none."""

    voices: Dict[str, Voice]
    default: str
    languages: List[str]

    def resolve(self, requested: Optional[SynthesizeVoice]) -> Voice:
        """The voice a Synthesize asks for; UnknownVoice for names, languages or speakers we do not have."""
        if requested is None or (requested.name is None and requested.language is None):
            return self.voices[self.default]
        if requested.name is not None:
            if requested.name not in self.voices:
                raise UnknownVoice(f"unknown voice {requested.name!r}; voices: {', '.join(sorted(self.voices))}")
            if requested.speaker:  # Home Assistant sends one only for voices whose Info lists speakers
                raise UnknownSpeaker(f"voice {requested.name!r} has no speaker {requested.speaker!r}: voices of "
                                     "this server have no speakers (each is one voice); leave the speaker empty")
            return self.voices[requested.name]
        if speaks(requested.language, self.languages):
            return self.voices[self.default]
        raise UnknownVoice(f"language {requested.language!r} is not supported; languages: "
                           f"{', '.join(self.languages)}")


def load_voice_book(synth: KalleSynthesizer, voices_dir: Optional[Path] = None,
                    default: Optional[str] = None) -> VoiceBook:
    """Presets first, then the voices of ``voices_dir``; a voice whose name is taken is skipped with a warning
    (names must stay unambiguous). A recording that cannot be cloned stops the start, with its reason."""
    voices: Dict[str, Voice] = dict(synth.voices)
    if voices_dir is not None:
        if not voices_dir.is_dir():
            raise InputError(f"--voices-dir {voices_dir} is not a directory")
        for voice in [*load_voice_dir(voices_dir), *clone_reference_voices(synth, voices_dir)]:
            if voice.name in voices:
                _LOGGER.warning("skipping voice %r from %s: the name is taken", voice.name, voices_dir)
                continue
            voices[voice.name] = voice
    if not voices:  # a model without presets (no speaker encoder) still speaks with seed 0
        voices["default"] = replace(synth.voice(0), name="default", description="the model's own voice")
    default = default or synth.default_voice or next(iter(voices))
    if default not in voices:
        raise UnknownVoice(f"--voice {default!r} is not available; voices: {', '.join(sorted(voices))}")
    return VoiceBook(voices, default, model_languages(synth.meta))


def clone_reference_voices(synth: KalleSynthesizer, voices_dir: Path) -> List[Voice]:
    """A voice per ``NAME/ref.wav`` + ``NAME/ref.txt`` (its transcript) under ``voices_dir``, cloned with the
    library's ``clone``: the layout wyoming-piper's cloning backend reads. Folders without ``ref.wav`` are skipped."""
    voices = []
    for folder in sorted(p for p in voices_dir.iterdir() if p.is_dir()):
        audio, text = folder / REFERENCE_AUDIO, folder / REFERENCE_TEXT
        if not audio.is_file():
            continue
        if not text.is_file():
            raise InputError(f"{folder} has {REFERENCE_AUDIO} but no {REFERENCE_TEXT} (its transcript)")
        try:
            voice = synth.clone(audio, text.read_text(encoding="utf-8").strip(), name=folder.name)
        except (OSError, InputError) as err:  # AudioError, a prompt too short/long, a wrong transcript
            raise InputError(f"cannot clone voice {folder.name!r} from {audio}: {err}") from err
        _LOGGER.info("Cloned voice %r from %s", voice.name, audio)
        voices.append(voice)
    return voices


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
