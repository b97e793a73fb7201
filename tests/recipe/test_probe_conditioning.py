"""The conditioning probe end to end on the tiny packed model and pieces of a real recording."""

import json
import math

import pytest

from espnet_kalle.recipe.probe_conditioning import main, markdown


def test_probe_reports_every_variant(tiny_model_dir, prompt_halves_dir, tmp_path, capsys):
    data_dir = prompt_halves_dir
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
