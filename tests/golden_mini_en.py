"""Golden outputs of the shipped model mini-en: the token ids of a sentence and, for every preset voice, the first
latent frames its LM generates from a fixed seed (``KallE.inference``, float PyTorch). ``test_mini_en`` compares
them with tests/data/mini_en_golden.json, so a change of the model's numerics (weights, tokenizer, g2p, prefix
layout, sampling) fails there instead of passing unnoticed.

After a deliberate change, regenerate the file and review its diff:

    .venv/bin/python tests/golden_mini_en.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import torch

TEXT = "The quick brown fox jumps over the lazy dog."
SEED = 0
FRAMES = 4  # the first frames: enough to see a change, few enough that rounding cannot compound
DECIMALS = 5
PATH = Path(__file__).resolve().parent / "data" / "mini_en_golden.json"


def compute(synth) -> Dict[str, Any]:
    """The golden record of ``synth`` (mini-en loaded by ``KalleSynthesizer.from_pretrained``)."""
    [ids] = synth.check_text(TEXT)
    record: Dict[str, Any] = {"text": TEXT, "seed": SEED, "frames": FRAMES, "token_ids": list(ids), "voices": {}}
    for name in sorted(synth.voices):
        voice = synth.voices[name]
        out = synth.model.inference(torch.tensor(ids), seed=SEED, speaker=voice.speaker, prompt_text=voice.prompt_ids,
                                    prompt_latents=voice.prompt_latents, max_frames=FRAMES, decode_wav=False)
        latents = [[round(float(x), DECIMALS) for x in frame] for frame in out["feat_gen"]]
        record["voices"][name] = {"prompt_ids": voice.prompt_ids.tolist(), "latents": latents}
    return record


def dumps(record: Dict[str, Any]) -> str:
    """JSON with one line per list (ids, a frame), so a changed frame is a one-line diff."""
    voices = ",\n".join(
        f' {json.dumps(name)}: {{\n  "prompt_ids": {json.dumps(v["prompt_ids"])},\n  "latents": [\n   '
        + ",\n   ".join(json.dumps(frame) for frame in v["latents"]) + "]}"
        for name, v in record["voices"].items()
    )
    head = {k: v for k, v in record.items() if k != "voices"}
    return json.dumps(head)[:-1] + ', "voices": {\n' + voices + "}}\n"


def main() -> None:
    from espnet_kalle.synthesizer import KalleSynthesizer

    record = compute(KalleSynthesizer.from_pretrained("mini-en"))
    PATH.write_text(dumps(record), encoding="utf-8")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
