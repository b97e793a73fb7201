"""Speaker similarity: cosine of resemblyzer utterance embeddings (its weights ship inside the wheel).

Two numbers per synthesized utterance: similarity to the reference utterance of the same id, and to the centroid
of every voice, whose arg-max identifies the nearest voice (does the model keep voices apart, not only sound
like someone). Embeddings are L2-normalised, so cosine is a dot product.
"""

from __future__ import annotations

import warnings
from typing import Dict, Iterable, Mapping, Tuple

import numpy as np

from espnet_kalle.audio import resample
from espnet_kalle.scoring.deps import require, version

ENCODER_SAMPLE_RATE = 16000


class SpeakerEncoder:
    """resemblyzer's VoiceEncoder on CPU; ``embed`` returns a unit-norm float32 vector."""

    def __init__(self, device: str = "cpu") -> None:
        require("webrtcvad")  # resemblyzer imports it (and pkg_resources through it: needs setuptools<81)
        with warnings.catch_warnings():  # resemblyzer 0.1.4 imports a deprecated scipy.ndimage path
            warnings.simplefilter("ignore", DeprecationWarning)
            resemblyzer = require("resemblyzer")
        self._preprocess = resemblyzer.preprocess_wav
        self._encoder = resemblyzer.VoiceEncoder(device, verbose=False)
        self.name = f"resemblyzer {version('resemblyzer')}"

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        x = resample(np.asarray(wav, dtype=np.float32), sample_rate, ENCODER_SAMPLE_RATE)
        trimmed = self._preprocess(x, ENCODER_SAMPLE_RATE)  # volume normalisation + VAD trimming of long pauses
        if len(trimmed) < ENCODER_SAMPLE_RATE // 10:  # all silence for the VAD: embed the untrimmed audio
            trimmed = x
        return unit(self._encoder.embed_utterance(trimmed))


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(unit(a), unit(b)))


def centroids(embeddings: Iterable[Tuple[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Unit-norm mean embedding per voice from ``(voice, embedding)`` pairs."""
    groups: Dict[str, list] = {}
    for voice, e in embeddings:
        groups.setdefault(voice, []).append(unit(e))
    return {v: unit(np.mean(es, axis=0)) for v, es in groups.items()}


def voice_similarities(embedding: np.ndarray, voice_centroids: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """Cosine similarity to every voice's centroid."""
    return {v: cosine(embedding, c) for v, c in voice_centroids.items()}


def nearest_voice(embedding: np.ndarray, voice_centroids: Mapping[str, np.ndarray]) -> Tuple[str, float]:
    """The voice whose centroid is most similar, and that similarity."""
    return most_similar(voice_similarities(embedding, voice_centroids))


def most_similar(similarities: Mapping[str, float]) -> Tuple[str, float]:
    """The (voice, similarity) with the highest similarity."""
    if not similarities:
        raise ValueError("no voice centroids")
    best = max(similarities, key=similarities.__getitem__)
    return best, similarities[best]
