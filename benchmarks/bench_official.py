"""The converted release-shape LM (random weights): our KV-cached step vs the release's recompute loop.

    nice -n 15 .venv/bin/python benchmarks/bench_official.py [--threads 2] [--text-tokens 40] [--repeats 3]
        [--device cpu|cuda]

No download: a release-shaped ``model.pt`` state dict (float16, as released) is built from the tsv listing of the
real checkpoint, converted with ``convert_lm`` and loaded into our ``KalleLM`` (float32). Per generated frame the
released ``Kalle.infer`` runs the whole sequence through the LLaMA again (``base_model.model(inputs_embeds=...)``,
no cache); ours runs one position against the KV cache. Both are timed at the step that makes the frame after
2, 5 and 10 s of speech (12.5 frames/s) following ``--text-tokens`` of text. Prints a table and the ratios.
Needs ~8 GB of RAM.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from transformers import DynamicCache

LISTING = Path(__file__).resolve().parents[1] / "tests" / "data" / "official_kalle" / "kalle_lm_state_dict.tsv"
SECONDS = (2, 5, 10)
FRAME_RATE = 12.5


def release_lm_state() -> dict:
    """Random tensors with the names, shapes and dtypes of the released ``model.pt``."""
    state = {}
    for line in LISTING.read_text().splitlines()[1:]:
        name, shape, dtype = line.split("\t")
        tensor = torch.empty([int(x) for x in shape.split("x")], dtype=getattr(torch, dtype))
        tensor.fill_(1.0) if "norm" in name else tensor.normal_(0, 0.02)
        state[name] = tensor
    state["base_model.lm_head.weight"] = state["base_model.model.embed_tokens.weight"]
    return state


def load_converted_lm(device: str):
    from espnet_kalle.compat.official import convert_lm
    from espnet_kalle.lm.model import KalleLM

    info, ours = convert_lm(release_lm_state())
    lm = KalleLM(vocab_size=info["vocab_size"], latent_dim=info["latent_dim"], **info["lm_conf"])
    lm.load_state_dict({k[len("lm."):]: v.float() for k, v in ours.items()})
    return lm.eval().to(device)


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    times = []
    for i in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text-tokens", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lm = load_converted_lm(args.device)
    frames = [round(s * FRAME_RATE) for s in SECONDS]
    length = args.text_tokens + max(frames)
    ids = torch.randint(0, 128000, (1, args.text_tokens), device=args.device)
    latents = torch.randn(1, max(frames), lm.latent_dim, device=args.device)
    inputs = torch.cat([lm.backbone.embed_tokens(ids), lm.audio_linear(latents)], dim=1)  # the release's layout
    head = lm.head.distribution_linear

    print(f"device {args.device}, {args.threads} threads, text {args.text_tokens} tokens, float32, "
          f"LLaMA {sum(p.numel() for p in lm.backbone.parameters()) / 1e9:.2f} B parameters")
    print("speech_s\tpositions\trecompute_step_s\tkv_cache_step_s\tratio")
    for seconds, n in zip(SECONDS, frames):
        positions = args.text_tokens + n  # the sequence the step that makes frame n + 1 sees

        # released Kalle.infer: base_model.model over everything, then distribution_linear
        def recompute(positions=positions):
            head(lm.backbone(inputs_embeds=inputs[:, :positions]).last_hidden_state[:, -1:])

        cache = DynamicCache()
        lm.backbone(inputs_embeds=inputs[:, : positions - 1], past_key_values=cache, use_cache=True)
        step_pos = torch.tensor([[positions - 1]], device=args.device)

        # ours: one position against the cache (then dropped again, to time the same step)
        def cached(positions=positions, step_pos=step_pos, cache=cache):
            out = lm.backbone(inputs_embeds=inputs[:, positions - 1 : positions], position_ids=step_pos,
                              past_key_values=cache, use_cache=True)
            head(out.last_hidden_state[:, -1:])
            cache.crop(positions - 1)

        slow, fast = timed(recompute, args.repeats, args.device), timed(cached, args.repeats, args.device)
        print(f"{seconds}\t{positions}\t{slow:.3f}\t{fast:.3f}\t{slow / fast:.1f}x")
    assert length <= lm.max_positions


if __name__ == "__main__":
    main()
