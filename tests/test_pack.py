"""Packing a trained LM + codec into a model dir: float16 storage and the int8 runtime flag."""

import numpy as np
import torch
import yaml

from espnet_kalle.pretrained.pack import main as pack_main
from espnet_kalle.synthesizer import KalleSynthesizer


def test_half_and_int8_flags_round_trip(tiny_model_dir, tmp_path):
    root = tiny_model_dir.parent  # the ESPnet-style experiment files the tiny model dir was packed from
    out = tmp_path / "packed"
    pack_main(["--lm-config", str(root / "kalle_config.yaml"), "--lm-model", str(root / "kalle.pth"),
               "--codec-config", str(root / "codec_config.yaml"), "--codec-model", str(root / "codec.pth"),
               "--out", str(out), "--voices", "2", "--voice-candidates", "3", "--half", "--int8-lm"])
    meta = yaml.safe_load((out / "model.yaml").read_text())
    assert meta["int8_lm"] is True and len(list((out / "voices").glob("*.voice.pt"))) == 2
    stored = torch.load(out / meta["lm_model"], weights_only=True)
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    synth = KalleSynthesizer.from_pretrained(out)
    assert synth.int8 and not KalleSynthesizer.from_pretrained(out, int8=False).int8
    wav = synth.synthesize("hello.", seed=0)
    assert wav.dtype == np.float32 and wav.size > 0
