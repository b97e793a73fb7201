"""Held-out voice evaluation (clone vs TTT) end to end on the tiny model and a real recording."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_kalle.recipe.heldout import main, markdown, read_sentences

PROMPT = Path(__file__).resolve().parents[1] / "data" / "prompt_70_3s.wav"
PROMPT_TEXT = "one division of la force is called the court of saint bernard."


def test_clone_and_ttt_are_scored_against_the_prompt(tiny_model_dir, tmp_path, capsys):
    text = tmp_path / "text"
    text.write_text("u1 hello there.\nu2 good morning.\nu3 third one.\n", encoding="utf-8")
    out = tmp_path / "heldout"
    assert main(["--model_dir", str(tiny_model_dir), "--prompt", str(PROMPT), PROMPT_TEXT, "--text_file", str(text),
                 "--num_sentences", "2", "--out_dir", str(out), "--ttt_steps", "2", "--ttt_samples", "4"]) == 0
    assert sorted(p.name for p in (out / "clone").iterdir()) == ["prompt_70_3s_00.wav", "prompt_70_3s_01.wav"]
    assert len(list((out / "ttt").iterdir())) == 2
    clone_wav, ttt_wav = (sf.read(out / system / "prompt_70_3s_00.wav")[0] for system in ("clone", "ttt"))
    assert not np.array_equal(clone_wav[:2560], ttt_wav[:2560])  # the TTT voice generates with adapted weights
    report = (out / "RESULTS.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| prompt_70_3s"))
    clone, ttt, gain = (float(x) for x in row.strip("| ").split("|")[1:])
    assert -1.0 <= clone <= 1.0 and -1.0 <= ttt <= 1.0 and gain == pytest.approx(ttt - clone, abs=2e-3)
    assert report in capsys.readouterr().out


def test_markdown_and_sentence_reading(tmp_path):
    assert "| a | 0.500 | 0.600 | +0.100 |" in markdown({"a": {"clone": 0.5, "ttt": 0.6}}, 50, 8)
    empty = tmp_path / "text"
    empty.write_text("only-an-id\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no transcripts"):
        read_sentences(empty, 3)
