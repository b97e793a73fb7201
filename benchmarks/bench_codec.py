"""Flow-VAE decoder speed on CPU: BigVGAN head vs iSTFT head, offline and streaming (1 frame = 80 ms per push).

Why: the paper's decoder is a BigVGAN; this project offers a CPU real-time path (the iSTFT head) and streaming
synthesis. This prints, for 5 s of audio (62 latent frames at 12.5 Hz) on 2 threads, the real-time factor
(compute time / audio time; < 1 is faster than real time) of both uses and the time to the first 80 ms of audio.

Heads (random init, weight norm folded as at inference; latent_dim 512 as in the paper):
- bigvgan: upsample_initial_channel 128 (the paper uses 1536), rates (5,4,4,4,2,2), resblocks (3,7,11) x (1,3,5)
- istft:   dim 256, intermediate_dim 768, 8 ConvNeXt layers, 4 sub-frames, n_fft 1280

Run on an idle machine (other processes make OpenMP threads spin and the numbers 3-13x worse):
    .venv/bin/python benchmarks/bench_codec.py [--threads 2] [--frames 62] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch
from timing import median_seconds  # benchmarks/timing.py

from espnet_kalle.codec.decoders import BigVGANDecoder, ISTFTDecoder
from espnet_kalle.codec.modules import remove_weight_norm_
from espnet_kalle.streaming import StreamDecoder

LATENT_DIM = 512
HEADS: Dict[str, Callable[[], torch.nn.Module]] = {
    "bigvgan-128": lambda: BigVGANDecoder(LATENT_DIM, upsample_initial_channel=128),
    "istft-256": lambda: ISTFTDecoder(LATENT_DIM, dim=256, intermediate_dim=768, num_layers=8),
}


def stream_once(decoder: torch.nn.Module, z: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """Push one frame at a time; returns (total seconds, seconds to the first non-empty chunk, audio)."""
    stream = StreamDecoder(decoder, LATENT_DIM)
    chunks: List[torch.Tensor] = []
    first = None
    start = time.perf_counter()
    for f in range(z.shape[-1]):
        chunk = stream.push(z[..., f : f + 1])
        if first is None and chunk.shape[-1] > 0:
            first = time.perf_counter() - start
        chunks.append(chunk)
    chunks.append(stream.flush())
    total = time.perf_counter() - start
    return total, first if first is not None else total, torch.cat(chunks, dim=-1)


def bench(name: str, frames: int, repeats: int) -> Dict[str, float]:
    torch.manual_seed(0)
    decoder = remove_weight_norm_(HEADS[name]()).eval()
    z = torch.randn(1, LATENT_DIM, frames)
    seconds = frames * decoder.hop_length / 16000
    with torch.inference_mode():
        offline = median_seconds(lambda: decoder(z), repeats)
        reference = decoder(z)
    stream_once(decoder, z)  # warm-up
    runs = [stream_once(decoder, z) for _ in range(repeats)]
    streamed = runs[-1][2]
    return {
        "params": sum(p.numel() for p in decoder.parameters()) / 1e6,
        "offline_rtf": offline / seconds,
        "stream_rtf": statistics.median(r[0] for r in runs) / seconds,
        "first_ms": 1000 * statistics.median(r[1] for r in runs),
        "max_diff": float((streamed - reference).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=62, help="latent frames (12.5 Hz): 62 = 4.96 s")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.frames} frames "
          f"({args.frames * 0.08:.2f} s), median of {args.repeats}")  # fmt: skip
    rows = {name: bench(name, args.frames, args.repeats) for name in HEADS}
    print("\n| head | params (M) | offline RTF | streaming RTF | first chunk (ms) | stream vs offline max |diff| |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['params']:.2f} | {r['offline_rtf']:.3f} | {r['stream_rtf']:.3f} | "
              f"{r['first_ms']:.1f} | {r['max_diff']:.1e} |")  # fmt: skip
    big, small = rows["bigvgan-128"], rows["istft-256"]
    print("\nratios:")
    print(f"  bigvgan / istft  offline RTF {big['offline_rtf'] / small['offline_rtf']:.1f}x, "
          f"streaming RTF {big['stream_rtf'] / small['stream_rtf']:.1f}x, "
          f"first chunk {big['first_ms'] / small['first_ms']:.1f}x")  # fmt: skip
    for name, r in rows.items():
        print(f"  {name}: streaming / offline RTF {r['stream_rtf'] / r['offline_rtf']:.2f}x")


if __name__ == "__main__":
    main()
