"""Per-token durations (ESPnet's ``durations``: frames per text token) from the mini corpus's flite phone timings,
for the LM's guided attention (``tts_conf.guided_attention.target: durations``).

Flite's phones and the LM's tokens (espeak phonemes, stress marks, spaces) are different sequences, so the mapping is
by progress: at the centre of latent frame j, the share of flite's spoken phones already said (a phone counts
fractionally while it is said; pauses hold the share) is laid onto the N tokens, and frame j goes to token
floor(share * N). Pauses, slow and fast phones and leading silence move the alignment off the diagonal. Utterances
without timings get the model's diagonal (``uniform_durations``), so every utterance has durations.

    python -m espnet_kalle.recipe.token_durations --timings dump/raw/train/phone_timings \\
        --text_shape exp/lm_stats/train/text_shape --speech_shape exp/lm_stats/train/speech_shape \\
        --utt2num_samples dump/raw/train/utt2num_samples --fs 16000 --out exp/lm_stats/train/durations
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_kalle.kaldi_io import read_kaldi_map, write_kaldi_map
from espnet_kalle.lm.guided_attention import uniform_durations

PAUSES = frozenset({"pau", "sil", "h#"})


def parse_timings(value: str) -> List[Tuple[str, float]]:
    """``phone:end ...`` (seconds) -> [(phone, end)]."""
    out = []
    for item in value.split():
        phone, _, end = item.rpartition(":")
        if not phone:
            raise ValueError(f"phone timing {item!r} is not phone:end_seconds")
        out.append((phone, float(end)))
    return out


def spoken_share(timings: Sequence[Tuple[str, float]], times: np.ndarray) -> np.ndarray:
    """The share in [0, 1] of the spoken (non-pause) phones said at each time."""
    total = sum(phone not in PAUSES for phone, _ in timings)
    if total == 0:
        return np.clip(times / max(timings[-1][1], 1e-9), 0.0, 1.0)
    # phones said at each phone's end: linear inside a spoken phone, flat inside a pause
    knots_t, knots_p, said = [0.0], [0.0], 0
    for phone, end in timings:
        said += int(phone not in PAUSES)
        knots_t.append(end)
        knots_p.append(said)
    return np.interp(times, knots_t, knots_p) / total


def token_durations(n_tokens: int, n_frames: int, seconds: float,
                    timings: Optional[Sequence[Tuple[str, float]]]) -> np.ndarray:
    """Frames per token [n_tokens] (summing to ``n_frames``) for an utterance of ``seconds`` of audio."""
    if not timings:
        return uniform_durations(torch.tensor([n_tokens]), torch.tensor([n_frames]))[0].numpy()
    share = spoken_share(timings, (np.arange(n_frames) + 0.5) * seconds / max(n_frames, 1))
    token = np.minimum((share * n_tokens).astype(np.int64), n_tokens - 1)
    return np.bincount(token, minlength=n_tokens)


def first_number(value: str) -> int:
    """The first field of an ESPnet shape (``T,odim`` or ``N``)."""
    return int(value.split(",")[0])


def write_durations(timings_file: Optional[Path], text_shape: Path, speech_shape: Path, utt2num_samples: Path,
                    fs: int, out: Path) -> Dict[str, int]:
    """Write ``out`` for every utterance of ``text_shape``; returns counts of timed and diagonal utterances."""
    timings = read_kaldi_map(timings_file) if timings_file is not None and timings_file.is_file() else {}
    tokens, frames = read_kaldi_map(text_shape), read_kaldi_map(speech_shape)
    samples = read_kaldi_map(utt2num_samples)
    lines, counts = {}, {"timed": 0, "diagonal": 0}
    for utt, n in tokens.items():
        if utt not in frames or utt not in samples:
            raise ValueError(f"{utt}: in {text_shape} but not in {speech_shape} or {utt2num_samples}")
        phones = parse_timings(timings[utt]) if utt in timings else None
        d = token_durations(first_number(n), first_number(frames[utt]), int(samples[utt]) / fs, phones)
        lines[utt] = " ".join(map(str, d.tolist()))
        counts["timed" if phones else "diagonal"] += 1
    write_kaldi_map(out, lines)
    return counts


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timings", type=Path, default=None, help="phone_timings of the set (missing: diagonal)")
    parser.add_argument("--text_shape", type=Path, required=True, help="tokens per utterance (LM collect_stats)")
    parser.add_argument("--speech_shape", type=Path, required=True, help="latent frames per utterance")
    parser.add_argument("--utt2num_samples", type=Path, required=True, help="audio samples per utterance")
    parser.add_argument("--fs", type=int, default=16000, help="sampling rate of utt2num_samples")
    parser.add_argument("--out", type=Path, required=True, help="durations file to write")
    args = parser.parse_args(argv)
    for path in (args.text_shape, args.speech_shape, args.utt2num_samples):
        if not path.is_file():
            print(f"token_durations: {path}: not found", file=sys.stderr)
            return 2
    try:
        counts = write_durations(args.timings, args.text_shape, args.speech_shape, args.utt2num_samples, args.fs,
                                 args.out)
    except ValueError as e:
        print(f"token_durations: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {counts['timed']} utterances from phone timings, {counts['diagonal']} on the diagonal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
