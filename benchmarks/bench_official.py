"""Full-size released layout with random weights: conversion time, load time + RSS, CPU RTF for 2 s of speech.

    .venv/bin/python benchmarks/bench_official.py [--threads 2] [--frames 25] [--workdir /tmp/kalle-official]

No download: the release-shaped state dicts are built from the tsv listings (LM float16, Flow-VAE float32, as
released), saved like the release, converted with kalle-convert-official and loaded with KalleSynthesizer.
Needs ~4 GB of disk and ~9 GB of RAM at peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import torch

REFERENCE = Path("/work/shared/reference/official_kalle")


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def release_state(tsv: str) -> dict:
    state = {}
    for line in (REFERENCE / tsv).read_text().splitlines()[1:]:
        name, shape, dtype = line.split("\t")
        tensor = torch.empty([int(x) for x in shape.split("x")], dtype=getattr(torch, dtype))
        if name.endswith("weight_g") or "norm" in name:
            tensor.fill_(1.0)
        else:
            tensor.normal_(0, 0.02)
        state[name] = tensor
    state["base_model.lm_head.weight"] = state["base_model.model.embed_tokens.weight"] if tsv.startswith("kalle") \
        else None
    return {k: v for k, v in state.items() if v is not None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kalle-official-bench"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"generator": release_state("flowvae_state_dict.tsv")}, work / "flowvae.pt")
    torch.save(release_state("kalle_lm_state_dict.tsv"), work / "model.pt")
    shutil.copyfile(REFERENCE / "flowvae_config.json", work / "config.json")

    from espnet_kalle.bin.convert_official import convert

    start = time.perf_counter()
    out = convert(work / "flowvae.pt", work / "config.json", work / "model.pt", work / "converted")
    convert_s = time.perf_counter() - start

    from espnet_kalle.synthesizer import KalleSynthesizer

    rss0 = rss_gb()
    start = time.perf_counter()
    # The random model has no tokenizer: load the parts the way from_pretrained does, without the text front end.
    from espnet_kalle.codec.load import load_flow_vae
    from espnet_kalle.tts.load import load_kalle

    model, _ = load_kalle(out / "lm/config.yaml", out / "lm/model.pth")
    codec = load_flow_vae(out / "codec/config.yaml", out / "codec/model.pth").prepare_for_inference()
    model.set_codec(codec)
    load_s = time.perf_counter() - start
    rss_loaded = rss_gb()
    synth = KalleSynthesizer(model, codec, tokenizer=None, voices=[])

    ids = torch.tensor([128000] + list(range(1000, 1020)))
    config = model.generation_config(max_frames=args.frames, min_frames=args.frames)
    from espnet_kalle.lm.generate import generate, seeded_generators

    with torch.inference_mode():
        prefix = synth.lm.prefix(ids)
        start = time.perf_counter()
        latents = generate(synth.lm, [prefix], [ids.numel()], config, seeded_generators([0]))[0]
        lm_s = time.perf_counter() - start
        start = time.perf_counter()
        wav = codec.decode(latents.T[None])
        dec_s = time.perf_counter() - start
    seconds = wav.shape[-1] / codec.sample_rate
    result = dict(
        threads=args.threads, frames=int(latents.shape[0]), audio_s=round(seconds, 2),
        convert_s=round(convert_s, 1), load_s=round(load_s, 1), rss_before_load_gb=round(rss0, 2),
        rss_loaded_gb=round(rss_loaded, 2), peak_rss_gb=round(peak_gb(), 2),
        lm_s=round(lm_s, 2), decode_s=round(dec_s, 2), rtf_lm=round(lm_s / seconds, 3),
        rtf_decoder=round(dec_s / seconds, 3), rtf_total=round((lm_s + dec_s) / seconds, 3),
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
