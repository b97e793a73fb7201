"""Intelligibility as word error rate of an offline ASR on the synthesized audio.

The default ASR is pocketsphinx's en-us model because its acoustic model and LM ship inside the wheel (nothing
downloads). It is fragile to sample conversion, so it is fed the exact int16 samples of 16 kHz audio (rounded,
never truncated). A Whisper model is used instead only when the user points at local
weights: a Hugging Face model dir (``config.json``, loaded by transformers), a CTranslate2 dir (``model.bin``,
faster-whisper) or an openai-whisper ``*.pt`` file. Both sides are normalised (case, punctuation, digits) before
jiwer aligns them, so the score measures words, not formatting.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Protocol, Sequence

import numpy as np

from espnet_kalle.audio import resample
from espnet_kalle.scoring.deps import ScorerUnavailable, require, version

ASR_SAMPLE_RATE = 16000

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_THOUSANDS_SEP = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NOT_WORD = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))


def spell_integer(n: int) -> str:
    """Cardinal words of a non-negative integer ("123" -> "one hundred twenty three"), as an ASR would write."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for value, word in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{spell_integer(head)} {word}" + ("" if rest == 0 else " " + spell_integer(rest))
    raise AssertionError("unreachable")


def _spell_numbers(text: str) -> str:
    """Digits -> words so "3" in the text matches "three" from the ASR (decimals read digit by digit)."""

    def words(m: re.Match) -> str:
        whole, _, frac = m.group(0).partition(".")
        out = spell_integer(int(whole))
        if frac:
            out += " point " + " ".join(_ONES[int(d)] for d in frac)
        return f" {out} "

    return _NUMBER.sub(words, text)


def normalize_text(text: str) -> str:
    """Lower case, ASCII-folded, digits spelled out, punctuation dropped (word-internal apostrophes kept)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("-", " ")
    text = _spell_numbers(_THOUSANDS_SEP.sub("", text))
    text = _NOT_WORD.sub(" ", text)
    words = [w.strip("'") for w in text.split()]
    return _SPACES.sub(" ", " ".join(w for w in words if w)).strip()


@dataclass
class WordErrors:
    """jiwer's alignment counts of one or many utterances; ``wer`` is errors over reference words."""

    ref_words: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / self.ref_words if self.ref_words else float("nan")


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Align normalised ``reference`` and ``hypothesis``; an empty hypothesis counts every word deleted."""
    jiwer = require("jiwer")
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        raise ValueError(f"empty reference text after normalisation: {reference!r}")
    if not hyp:
        n = len(ref.split())
        return WordErrors(n, 0, 0, n, 0)
    out = jiwer.process_words(ref, hyp)
    return WordErrors(len(ref.split()), out.hits, out.substitutions, out.deletions, out.insertions)


def sum_errors(items: Sequence[WordErrors]) -> WordErrors:
    """Corpus totals (a corpus WER is total errors / total words, not a mean of utterance WERs)."""
    return WordErrors(*(sum(getattr(e, f) for e in items) for f in ("ref_words", "hits", "substitutions",
                                                                    "deletions", "insertions")))


class ASR(Protocol):
    name: str

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str: ...


def to_int16(wav: np.ndarray) -> np.ndarray:
    """float [-1, 1) -> int16 by rounding (x * 32768), the inverse of libsndfile's int16 -> float scaling."""
    return np.clip(np.rint(np.asarray(wav, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


class PocketSphinxASR:
    """pocketsphinx 5 en-us decoder (model files inside the wheel); one decoder reused across utterances."""

    def __init__(self) -> None:
        ps = require("pocketsphinx")
        self._decoder = ps.Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL")
        self.name = f"pocketsphinx {version('pocketsphinx')} en-us"

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        pcm = to_int16(resample(np.asarray(wav, dtype=np.float32), sample_rate, ASR_SAMPLE_RATE))
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""


class WhisperASR:
    """Whisper from local weights only (English, greedy); refuses anything that is not an existing path."""

    def __init__(self, model_path: str, device: str = "cpu") -> None:
        path = Path(model_path)
        if not path.exists():
            raise FileNotFoundError(f"{model_path}: no such Whisper model (weights are never downloaded)")
        self.name = f"whisper ({path.name})"
        if path.is_dir() and (path / "config.json").is_file():
            self._backend = "transformers"
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            transformers = require("transformers")
            self._processor = transformers.WhisperProcessor.from_pretrained(str(path), local_files_only=True)
            self._model = transformers.WhisperForConditionalGeneration.from_pretrained(
                str(path), local_files_only=True
            ).to(device).eval()
            self._device = device
        elif path.is_dir() and (path / "model.bin").is_file():
            self._backend = "faster-whisper"
            fw = require("faster_whisper", "faster-whisper")
            self._model = fw.WhisperModel(str(path), device=device, compute_type="int8", local_files_only=True)
        elif path.is_file() and path.suffix == ".pt":
            self._backend = "openai-whisper"
            whisper = require("whisper", "openai-whisper")
            self._model = whisper.load_model(str(path), device=device)
        else:
            raise ValueError(
                f"{model_path}: expected a Hugging Face Whisper dir (config.json), a CTranslate2 dir (model.bin) "
                "or an openai-whisper .pt file"
            )

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        x = resample(np.asarray(wav, dtype=np.float32), sample_rate, ASR_SAMPLE_RATE)
        if self._backend == "transformers":
            import torch

            feats = self._processor(x, sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt").input_features
            with torch.inference_mode():
                ids = self._model.generate(feats.to(self._device), language="en", task="transcribe")
            return self._processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
        if self._backend == "faster-whisper":
            segments, _ = self._model.transcribe(x, language="en", beam_size=1)
            return " ".join(s.text.strip() for s in segments)
        return self._model.transcribe(x, language="en", fp16=False)["text"].strip()


def make_asr(whisper: Optional[str] = None) -> ASR:
    """Whisper when the user gave local weights, else pocketsphinx (raises ``ScorerUnavailable`` if missing)."""
    return WhisperASR(whisper) if whisper else PocketSphinxASR()


__all__: List[str] = [
    "ASR",
    "PocketSphinxASR",
    "ScorerUnavailable",
    "WhisperASR",
    "WordErrors",
    "make_asr",
    "normalize_text",
    "sum_errors",
    "to_int16",
    "word_errors",
]
