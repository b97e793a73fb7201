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


def test_lang_is_recorded_validated_and_read_back(tiny_model_dir, tmp_path):
    """--lang goes into model.yaml (the integrations advertise it); a bad code fails before any work and when a
    model dir carrying one is loaded; a model.yaml without lang means English (every earlier model)."""
    import shutil

    import pytest

    root = tiny_model_dir.parent
    args = ["--lm-config", str(root / "kalle_config.yaml"), "--lm-model", str(root / "kalle.pth"),
            "--codec-config", str(root / "codec_config.yaml"), "--codec-model", str(root / "codec.pth"),
            "--voices", "0"]
    pack_main([*args, "--out", str(tmp_path / "de"), "--lang", "de_CH"])
    assert yaml.safe_load((tmp_path / "de/model.yaml").read_text())["lang"] == "de_CH"
    assert KalleSynthesizer.from_pretrained(tmp_path / "de").lang == "de_CH"
    with pytest.raises(ValueError, match="language code"):
        pack_main([*args, "--out", str(tmp_path / "bad"), "--lang", "German"])
    assert not (tmp_path / "bad").exists()  # checked before anything was written

    old = tmp_path / "old"
    shutil.copytree(tmp_path / "de", old)
    meta = yaml.safe_load((old / "model.yaml").read_text())
    del meta["lang"]
    (old / "model.yaml").write_text(yaml.safe_dump(meta))
    assert KalleSynthesizer.from_pretrained(old).lang == "en"
    meta["lang"] = "en US"
    (old / "model.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ValueError, match="'en US'"):
        KalleSynthesizer.from_pretrained(old)
    from espnet_kalle.languages import check_lang

    for good in ("en", "yue", "en_US", "pt-BR", "zh-Hans-CN"):
        assert check_lang(good) == good
    for bad in ("", "EN", "english", "e", "en_", 1, None):
        with pytest.raises(ValueError):
            check_lang(bad)
