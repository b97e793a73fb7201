"""The conditioning probe end to end on the tiny packed model and pieces of a real recording."""

import json
import math
from pathlib import Path

import pytest
import soundfile as sf

from espnet_kalle.recipe.probe_conditioning import main, markdown

PROMPT = Path(__file__).resolve().parents[1] / "data" / "prompt_70_3s.wav"


@pytest.fixture
def data_dir(tmp_path):
    wav, rate = sf.read(PROMPT, dtype="float32")
    half = wav.size // 2
    root = tmp_path / "dev"
    root.mkdir()
    for utt, piece in (("a-1", wav[:half]), ("b-1", wav[half:])):
        sf.write(root / f"{utt}.wav", piece, rate)
    (root / "wav.scp").write_text(f"a-1 {root / 'a-1.wav'}\nb-1 {root / 'b-1.wav'}\n", encoding="utf-8")
    (root / "text").write_text("a-1 one division of la force.\nb-1 is called the court.\n", encoding="utf-8")
    (root / "utt2spk").write_text("a-1 a\nb-1 b\n", encoding="utf-8")
    return root


def test_probe_reports_every_variant(tiny_model_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert main(["--model_dir", str(tiny_model_dir), "--data_dir", str(data_dir), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    variants = ["own text", "other text", "int8 LM", "zero speaker", "other speaker"]
    assert set(result) == set(variants) | {"speaker latent norm", "utterances"} and result["utterances"] == 2
    assert all(math.isfinite(result[v]) and result[v] > 0 for v in variants)
    for swapped in variants[1:]:  # each variant really changes an input of the LM
        assert result[swapped] != result["own text"], swapped
    assert markdown(result) in capsys.readouterr().out
    assert main(["--model_dir", str(tiny_model_dir), "--data_dir", str(data_dir), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == result  # the same posterior draws with the same seed


def test_probe_needs_a_data_dir(tiny_model_dir, tmp_path):
    with pytest.raises(SystemExit, match="wav.scp: not found"):
        (tmp_path / "text").write_text("u hi\n")
        main(["--model_dir", str(tiny_model_dir), "--data_dir", str(tmp_path)])
