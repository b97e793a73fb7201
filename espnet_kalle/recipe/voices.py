"""The teacher voices of the ``mini`` corpus and the one function that makes a 16 kHz WAV with one of them.

Default voices need only Debian's ``flite`` and ``sox`` (both permissive licences). flite ships four usable
16 kHz English voices (slt: US female, rms: US male, awb: Scottish male, all clustergen; kal16: US male diphone).
More speakers come from variants of those voices: flite's ``int_f0_target_mean`` moves the pitch of slt, awb and
kal16 (rms ignores it, measured), ``duration_stretch`` changes the speaking rate, and for rms a sox ``pitch``
shift moves pitch and formants together, which sounds like another, younger speaker.

Optional (``--voices`` naming ``mb_*``): MBROLA diphone voices through ``espeak-ng``. They need the ``mbrola``
package (Debian contrib) and ``mbrola-us1``/``-us2``/``-us3``/``-en1`` (Debian non-free). The MBROLA voice
databases are licensed for NON-COMMERCIAL, NON-MILITARY use only, so a corpus made with them inherits that.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from espnet_kalle.atomic import atomic_path, write_text_atomic

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Voice:
    """A named speaker: which engine and voice, its engine settings and an optional sox effect chain."""

    name: str
    engine: str  # "flite" | "espeak"
    voice: str
    features: dict[str, float] = field(default_factory=dict)  # flite --setf NAME=VALUE
    sox_effects: tuple[str, ...] = ()
    description: str = ""


VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("slt", "flite", "slt", description="flite slt, US English female"),
        Voice("rms", "flite", "rms", description="flite rms, US English male"),
        Voice("awb", "flite", "awb", description="flite awb, Scottish English male"),
        Voice("kal", "flite", "kal16", description="flite kal16 (diphone), US English male"),
        Voice(
            "slt_low", "flite", "slt", {"int_f0_target_mean": 135.0, "duration_stretch": 1.12},
            description="slt, lower (135 Hz) and slower",
        ),
        Voice(
            "awb_high", "flite", "awb", {"int_f0_target_mean": 175.0, "duration_stretch": 0.9},
            description="awb, higher (175 Hz) and faster",
        ),
        Voice(
            "kal_high", "flite", "kal16", {"int_f0_target_mean": 130.0, "duration_stretch": 1.15},
            description="kal16, higher (130 Hz) and slower",
        ),
        Voice(
            "rms_high", "flite", "rms", {"duration_stretch": 0.92}, ("pitch", "400"),
            description="rms, pitch and formants +4 semitones (sox), faster",
        ),
        Voice("mb_us1", "espeak", "mb-us1", description="MBROLA us1 US female (non-commercial licence)"),
        Voice("mb_us2", "espeak", "mb-us2", description="MBROLA us2 US male (non-commercial licence)"),
        Voice("mb_us3", "espeak", "mb-us3", description="MBROLA us3 US male (non-commercial licence)"),
        Voice("mb_en1", "espeak", "mb-en1", description="MBROLA en1 British male (non-commercial licence)"),
    )
}
DEFAULT_VOICES = ("slt", "rms", "awb", "kal", "slt_low", "awb_high", "kal_high", "rms_high")
MBROLA_VOICES = ("mb_us1", "mb_us2", "mb_us3", "mb_en1")

APT_HINT = {
    "flite": "apt-get install flite",
    "sox": "apt-get install sox",
    "espeak-ng": "apt-get install espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 "
    "(mbrola is in Debian contrib and its voices in non-free: enable those components first)",
}


def parse_voices(spec: str) -> list[Voice]:
    """Voices from a comma-separated list of names ("default" and "mbrola" expand to their groups)."""
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        group = {"default": DEFAULT_VOICES, "mbrola": MBROLA_VOICES}.get(item, (item,))
        names.extend(n for n in group if n not in names)
    unknown = [n for n in names if n not in VOICES]
    if unknown:
        raise ValueError(f"unknown voice(s) {', '.join(unknown)}; known: {', '.join(VOICES)}")
    if not names:
        raise ValueError("no voices given")
    return [VOICES[n] for n in names]


def required_tools(voices: list[Voice]) -> list[str]:
    """Executables the chosen voices need (sox always: it writes the final 16 kHz mono 16-bit file)."""
    tools = ["sox"]
    if any(v.engine == "flite" for v in voices):
        tools.append("flite")
    if any(v.engine == "espeak" for v in voices):
        tools.append("espeak-ng")
    return tools


def missing_tools(voices: list[Voice]) -> list[str]:
    """The required tools not found on PATH."""
    return [t for t in required_tools(voices) if shutil.which(t) is None]


def timings_path(wav: str | Path) -> Path:
    """Where the phone timings of a flite recording are kept (next to it, ``<name>.phones``)."""
    return Path(wav).with_suffix(".phones")


def has_timings(voice: Voice) -> bool:
    """flite prints each phone with its end time; espeak-ng + MBROLA gives none."""
    return voice.engine == "flite"


def synthesize(voice: Voice, text: str, out_wav: str | Path) -> None:
    """Write ``text`` spoken by ``voice`` to ``out_wav`` as 16 kHz mono 16-bit PCM, atomically, and for flite its
    phone timings (``timings_path``: flite's ``-psdur`` segments, ``phone:end_seconds`` per phone, pauses included;
    the sox effects keep durations), which an aligner or an attention prior can use later.

    The file appears only when complete (tmp + rename), so an interrupted build resumes by skipping what exists.
    """
    out = Path(out_wav)
    raw = out.with_name(out.stem + ".raw.wav")
    try:
        with atomic_path(out, suffix=".wav") as tmp:
            if voice.engine == "flite":
                cmd = ["flite", "-voice", voice.voice, "-psdur"]
                for key, value in voice.features.items():
                    cmd += ["--setf", f"{key}={value}"]
                cmd += ["-t", text, "-o", str(raw)]
            elif voice.engine == "espeak":
                cmd = ["espeak-ng", "-v", voice.voice, "-w", str(raw), text]
            else:
                raise ValueError(f"unknown engine {voice.engine}")
            printed = _run(cmd)
            if has_timings(voice):
                segments = [token for token in printed.split() if ":" in token]
                if not segments:
                    raise RuntimeError(f"{voice.name}: flite printed no phone timings for {text!r}")
                write_text_atomic(timings_path(out), " ".join(segments) + "\n")
            _run(["sox", "-q", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                  str(tmp), *voice.sox_effects, "rate", "-h", str(SAMPLE_RATE)])
            if tmp.stat().st_size <= 44:
                raise RuntimeError(f"{voice.name}: empty audio for {text!r}")
    finally:
        raw.unlink(missing_ok=True)


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout
