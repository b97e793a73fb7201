"""Preset voices: speaker latents drawn from N(0, I) by seed, each with a prompt the model speaks itself, picked
for being one distinct person and named by pitch.

    python -m espnet_kalle.pretrained.presets --model-dir exp/packed/mini-en [--voices 4] [--candidates 32]

Why the prompt: an autoregressive LM takes its voice mostly from the frames before it, and a small model's speaker
latent alone drifts toward its average voice (mini-en: every plain preset was nearest the same teacher voice, SIM
0.74). A candidate first speaks ``PROMPT_TEXT`` in its latent's voice at temperature 1.0; every sentence then
continues that prompt (``KalleSynthesizer.with_own_prompt``), which holds the voice as a recording holds a clone's.

Why picking: most prompts land on the model's average voice (where a latent alone drifts), some on a distinct
voice that the continuation then keeps. Picking listens only to the model, never to a recording: each candidate
speaks ``CHECK_SENTENCES``; the half whose sentences sound least like one speaker (resemblyzer cosine between them)
is dropped, and presets are the voices farthest from the average of all candidates, unlike each other where the
candidates allow (``pick_distinct``). mini-en: 36 candidates, 3 presets; see its RESULTS.md.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import yaml

from espnet_kalle.atomic import write_text_atomic
from espnet_kalle.scoring.speaker_sim import unit
from espnet_kalle.voice import Voice

# Short, because every sentence of a preset prefills the prompt's frames again. On mini-en (3 seeds x 16 test
# sentences) this 27-character prompt (~26 frames) held the same voices as a 50-character one (SIM to the nearest
# teacher voice 0.834 against 0.838) with ~35 fewer positions per sentence; a 13-character one lost them (0.775).
PROMPT_TEXT = "The ship sailed at sunrise."
PROMPT_TEMPERATURE = 1.0
CHECK_SENTENCES = (
    "This is my voice, and I like the way it sounds.",
    "Please call me back when you get this message.",
    "The weather will be clear with a light breeze.",
    "Turn left at the next corner and keep going.",
)
CANDIDATES_PER_VOICE = 12
SAME_VOICE = 0.95  # resemblyzer cosine above which two candidates count as one voice
PITCH_BANDS = ("low", "mid", "high")


@dataclass(eq=False)  # identity equality: comparing the array fields elementwise would raise
class Candidate:
    seed: int
    voice: Voice
    embeddings: np.ndarray  # [sentences, dim], unit-norm speaker embeddings of the check sentences
    wavs: List[np.ndarray]  # the check sentences (pitch is measured on picked candidates only: it is slow)
    sample_rate: int

    @property
    def consistency(self) -> float:
        """Mean cosine between its check sentences: does it sound like one person throughout?"""
        n = len(self.embeddings)
        if n < 2:
            return 1.0
        gram = self.embeddings @ self.embeddings.T
        return float((gram.sum() - np.trace(gram)) / (n * n - n))

    @property
    def centroid(self) -> np.ndarray:
        return unit(self.embeddings.mean(axis=0))

    def median_pitch(self) -> float:
        """Median F0 over the voiced frames of its check sentences (0.0 when none is voiced)."""
        voiced = [f for f in (median_f0(w, self.sample_rate) for w in self.wavs if w.size) if f > 0]
        return float(np.median(voiced)) if voiced else 0.0


def median_f0(wav: np.ndarray, sample_rate: int) -> float:
    import pyworld

    f0, _ = pyworld.harvest(wav.astype(np.float64), sample_rate, frame_period=10.0)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else 0.0


def audition(synth, seed: int, encoder, sentences: Sequence[str] = CHECK_SENTENCES) -> Candidate:
    """The seed's speaker latent with its own prompt, heard on ``sentences`` (sentence i sampled with seed i)."""
    voice = synth.with_own_prompt(seed, PROMPT_TEXT, seed=seed, temperature=PROMPT_TEMPERATURE)
    wavs = [synth.synthesize(sentence, voice=voice, seed=index) for index, sentence in enumerate(sentences)]
    embeddings = np.stack([unit(encoder.embed(wav, synth.sample_rate)) for wav in wavs])
    return Candidate(seed, voice, embeddings, wavs, synth.sample_rate)


def pick_distinct(candidates: Sequence[Candidate], n: int, same_voice: float = SAME_VOICE) -> List[Candidate]:
    """The ``n`` candidates farthest from the model's average voice, preferring voices unlike those taken.

    The less consistent half is dropped (never below ``n``). The average voice is the mean of every candidate:
    where a speaker latent alone drifts, so a preset there is the voice any latent gives. Candidates at least half
    as far from it as the farthest are taken farthest first, skipping any within ``same_voice`` cosine of one
    already taken; if that leaves fewer than ``n``, the rest are filled in order of distance from the average.
    """
    if n <= 0:
        return []
    ranked = sorted(candidates, key=lambda c: -c.consistency)
    pool = ranked[: max(n, (len(ranked) + 1) // 2)]
    average = unit(np.mean([c.centroid for c in candidates], axis=0))
    distance = {id(c): 1.0 - float(c.centroid @ average) for c in pool}
    order = sorted(pool, key=lambda c: -distance[id(c)])
    far = [c for c in order if distance[id(c)] >= 0.5 * distance[id(order[0])]]
    picked: List[Candidate] = []
    for c in far:
        if len(picked) < n and all(float(c.centroid @ p.centroid) < same_voice for p in picked):
            picked.append(c)
    for c in order:
        if len(picked) < n and c not in picked:
            picked.append(c)
    return picked


def name_by_pitch(picked: Sequence[Candidate]) -> List[Voice]:
    """Name presets by pitch band (the user's first question about a voice): low-1, mid-1, high-1, ..."""
    ordered = sorted(((c.median_pitch(), c) for c in picked), key=lambda fc: (fc[0], fc[1].seed))
    counts = {band: 0 for band in PITCH_BANDS}
    voices = []
    for rank, (f0, candidate) in enumerate(ordered):
        band = PITCH_BANDS[min(len(PITCH_BANDS) - 1, rank * len(PITCH_BANDS) // len(ordered))]
        counts[band] += 1
        voice = candidate.voice
        voice.name = f"{band}-{counts[band]}"
        voice.description = f"preset voice (seed {candidate.seed}, continues its own prompt), median F0 {f0:.0f} Hz"
        voice.tags = {"median_f0": f"{f0:.1f}", "band": band,
                      "consistency": f"{candidate.consistency:.3f}"}
        voices.append(voice)
    return voices


def make_presets(synth, n_voices: int, n_candidates: Optional[int] = None, encoder=None,
                 progress=None) -> List[Voice]:
    """Audition ``n_candidates`` seeds (default ``CANDIDATES_PER_VOICE`` per voice), pick and name ``n_voices``."""
    if n_voices <= 0:
        return []
    if synth.model.speaker is None:
        raise ValueError("this model has no speaker encoder: it has no preset voices (clone a recording instead)")
    n_candidates = max(n_voices, n_candidates or CANDIDATES_PER_VOICE * n_voices)
    if encoder is None:
        from espnet_kalle.scoring.speaker_sim import SpeakerEncoder

        encoder = SpeakerEncoder()
    candidates = []
    for seed in range(n_candidates):
        candidates.append(audition(synth, seed, encoder))
        if progress is not None:
            progress(candidates[-1])
    return name_by_pitch(pick_distinct(candidates, n_voices))


def write_presets(model_dir: Path, synth, n_voices: int, n_candidates: Optional[int] = None,
                  progress=None) -> List[Voice]:
    """Replace the model dir's ``voices/`` with fresh presets and make the middle one the default."""
    presets = make_presets(synth, n_voices, n_candidates, progress=progress)
    meta_path = model_dir / "model.yaml"
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    voices_dir = model_dir / meta.get("voices_dir", "voices")
    voices_dir.mkdir(exist_ok=True)
    for old in voices_dir.glob("*.voice.pt"):
        old.unlink()
    for voice in presets:
        voice.save(voices_dir / f"{voice.name}.voice.pt")
    meta.pop("default_voice", None)
    if presets:
        meta["default_voice"] = presets[len(presets) // 2].name
    write_text_atomic(meta_path, yaml.safe_dump(meta, sort_keys=False))
    return presets


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="a packed model dir")
    parser.add_argument("--voices", type=int, default=4, help="number of presets to keep")
    parser.add_argument("--candidates", type=int, default=None,
                        help=f"seeds to audition (default {CANDIDATES_PER_VOICE} per voice)")
    args = parser.parse_args(argv)
    from espnet_kalle.synthesizer import KalleSynthesizer

    synth = KalleSynthesizer.from_pretrained(args.model_dir)

    def report(c: Candidate) -> None:
        print(f"seed {c.seed}: consistency {c.consistency:.3f}", flush=True)

    for voice in write_presets(args.model_dir, synth, args.voices, args.candidates, progress=report):
        print(f"{voice.name}: {voice.description}")


if __name__ == "__main__":
    main()
