"""Frames per second of KV-cached generation vs the release's full-prefix recompute, on 2 CPU threads.

    python benchmarks/bench_generation.py [--threads 2] [--seconds 2 5 10 20]

A ~18M-parameter LM (hidden 512, 6 layers, 8 heads, 512-dim latents, random weights: speed does not depend on
training). The stop rule is disabled so every run makes exactly the requested number of frames (12.5 per second).
"""

from __future__ import annotations

import argparse
import time

import torch

from espnet_kalle.lm.generate import GenerationConfig, generate, seeded_generators
from espnet_kalle.lm.model import KalleLM


def build_lm() -> KalleLM:
    torch.manual_seed(0)
    return KalleLM(vocab_size=64, latent_dim=512, hidden_size=512, num_layers=6, num_heads=8,
                   intermediate_size=1536, speaker_dim=192, max_position_embeddings=1024).eval()


def frames_per_second(model: KalleLM, frames: int, use_cache: bool) -> float:
    text = torch.randint(0, 64, (40,))  # a ~10-word sentence of characters
    prefix = model.prefix(text, torch.zeros(192))
    config = GenerationConfig(stop_threshold=-1.0, min_frames=0, max_frames=frames, use_cache=use_cache)
    start = time.perf_counter()
    out = generate(model, [prefix], [40], config, seeded_generators([0]))[0]
    elapsed = time.perf_counter() - start
    assert out.shape[0] == frames
    return frames / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, nargs="+", default=[2, 5, 10, 20])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_lm()
    n_params = sum(p.numel() for p in model.parameters())
    # Warm-up over every sequence length used below: oneDNN builds kernels per new shape on first use, which
    # would otherwise be charged to whichever path meets a length first (the recompute path sees a new one per step).
    longest = int(round(max(args.seconds) * 12.5))
    frames_per_second(model, longest, True)
    frames_per_second(model, longest, False)
    print(f"LM parameters: {n_params / 1e6:.1f}M, threads: {args.threads}")
    header = ("audio (s)", 9), ("frames", 6), ("cached fr/s", 11), ("recompute fr/s", 14), ("speed-up", 8), \
        ("RTF cached", 10)
    print(" ".join(f"{name:>{width}}" for name, width in header))
    for seconds in args.seconds:
        frames = int(round(seconds * 12.5))
        cached = frames_per_second(model, frames, True)
        full = frames_per_second(model, frames, False)
        print(f"{seconds:9.0f} {frames:6d} {cached:11.1f} {full:14.1f} {cached / full:7.1f}x {12.5 / cached:10.3f}")


if __name__ == "__main__":
    main()
