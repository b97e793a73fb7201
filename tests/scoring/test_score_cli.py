"""kalle-score end to end on a tiny flite ref dir and one hypothesis system, plus graceful degradation."""

import json
import sys

import pytest

from espnet_kalle.bin.score import main
from espnet_kalle.scoring.data import load_ref_dir
from espnet_kalle.scoring.runner import build_scorer, score_systems


def test_cli_end_to_end(flite_corpus, tmp_path):
    ref = flite_corpus.write_data_dir(tmp_path / "data" / "test", ["slt_0", "slt_1", "rms_0"])
    hyp = tmp_path / "decode" / "swapped" / "wav"
    hyp.mkdir(parents=True)
    # A "system" that says the right text in the wrong voice for slt_0; slt_1 and rms_0 are missing.
    (hyp / "slt_0.wav").write_bytes(flite_corpus.wav["rms_0"].read_bytes())
    (hyp.parent / "rtf").write_text("slt_0 0.2 2.0\n")
    exp = tmp_path / "exp" / "kalle"
    exp.mkdir(parents=True)
    (exp / "train.log").write_text("x INFO: 1epoch results: [train] loss=2.0, [valid] loss=3.0\n"
                                   "x INFO: 2epoch results: [train] loss=1.0, [valid] loss=2.5\n")
    out = tmp_path / "scoring"
    assert main(["--ref-dir", str(ref), "--hyp-dir", str(hyp.parent), "--system", "swapped",
                 "--train-log-dir", str(exp), "--out", str(out)]) == 0
    md = (out / "RESULTS.md").read_text()
    assert "|reference|3|" in md and "|swapped|1|" in md
    summary = json.loads((out / "summary.json").read_text())
    ceiling, swapped = summary["systems"]["reference"], summary["systems"]["swapped"]
    assert swapped["utts"] == 1 and swapped["rtf"] == pytest.approx(0.1)
    assert summary["coverage"]["swapped"] == {"scored": 1, "references": 3}
    assert "swapped: 1/3" in md
    produced = {"wer": "wer", "sim": "sim_ref", "mcd": "mcd", "dnsmos": "dnsmos_ovrl"}
    for metric, key in produced.items():
        assert (key in swapped) == (metric not in summary["unavailable"]), metric
    if "sim" not in summary["unavailable"]:
        assert ceiling["sim_ref"] > swapped["sim_ref"]  # another utterance of the same speaker beats a wrong voice
        assert ceiling["voice_acc"] == 1.0 and swapped["voice_acc"] == 0.0
        # Scored as a voice without a target (a preset), the swapped audio is closest to rms, its real voice.
        assert swapped["sim_nearest_voice"] == "rms" and swapped["sim_nearest"] > swapped["sim_centroid"]
        assert "(rms)" in md
    if "wer" not in summary["unavailable"]:
        assert ceiling["wer"] < 0.4
    assert swapped.get("mcd", 1.0) > 0
    for png in ("metrics_per_system.png", "metrics_per_voice.png", "train_kalle_0.png"):
        assert (out / "plots" / png).is_file()
    assert (out / "scores.tsv").read_text().count("\n") == 1 + 3 + 1


def test_missing_package_is_reported_not_raised(flite_corpus, tmp_path, monkeypatch):
    build_scorer.cache_clear()  # forget a DNSMOS built by an earlier test in this process
    monkeypatch.setitem(sys.modules, "speechmos", None)  # import speechmos -> ImportError
    monkeypatch.setitem(sys.modules, "speechmos.dnsmos", None)
    ref = load_ref_dir(flite_corpus.write_data_dir(tmp_path / "ref", ["slt_0"]))
    run = score_systems(ref, [], metrics=["dnsmos"])
    assert "not available (pip install espnet-kalle[score])" in run.unavailable["dnsmos"]
    assert run.rows[0]["dnsmos_ovrl"] == ""
    assert main(["--ref-dir", str(tmp_path / "ref"), "--metrics", "dnsmos", "--out", str(tmp_path / "o")]) == 0
    assert "dnsmos: speechmos: not available (pip install espnet-kalle[score])" in (
        tmp_path / "o" / "RESULTS.md").read_text()


def test_missing_report_inputs_fail_before_scoring(tmp_path, monkeypatch, capsys):
    """--latents and --train-log-dir are read by the report, after the scoring: a wrong path must not cost that."""
    import espnet_kalle.bin.score as cli

    monkeypatch.setattr(cli, "load_ref_dir", lambda *a: pytest.fail("scored although an input is missing"))
    assert main(["--ref-dir", str(tmp_path), "--latents", str(tmp_path / "none.scp"),
                 "--train-log-dir", str(tmp_path / "no_exp"), "--out", str(tmp_path / "o")]) == 2
    message = capsys.readouterr().err
    assert "not found" in message and "none.scp" in message and "no_exp" in message
    assert not (tmp_path / "o").exists()
