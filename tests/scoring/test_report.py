"""report.py, plots.py, train_log.py, latents.py and rtf.py on synthetic rows (no scorer packages needed)."""

import math
import struct

import numpy as np
import pytest

from espnet_kalle.scoring.report import aggregate, nearest_voice_stats, write_report
from espnet_kalle.scoring.rtf import read_rtf_file
from espnet_kalle.scoring.runner import COLUMNS, ScoreRun
from espnet_kalle.scoring.train_log import load_curves, parse_epoch_lines

TRAIN_LOG = """\
[host] 2026-01-01 00:00:00,000 (trainer:300) INFO: 1epoch:train:1-2batch: iter_time=1.0e-01, loss=5.000, kl=2.000
[host] 2026-01-01 00:00:01,000 (trainer:300) INFO: 1epoch:train:3-4batch: iter_time=1.0e-01, loss=4.000, kl=1.500
[host] 2026-01-01 00:00:02,000 (trainer:338) INFO: 1epoch results: [train] iter_time=0.100, loss=4.500, kl=1.750, \
optim0_lr0=1.000e-04, train_time=0.500, time=1 hour, 2 minutes and 3.4 seconds, total_count=4, [valid] loss=4.800, \
time=1.2 seconds, total_count=2
[host] 2026-01-01 00:00:03,000 (trainer:338) INFO: 2epoch results: [train] loss=3.000, kl=1.000, [valid] loss=3.500
[host] 2026-01-01 00:00:04,000 (trainer:338) INFO: 3epoch results: [train] loss=2.000, kl=0.500, [valid] loss=nan
"""


def _row(system, utt, voice, **kw):
    r = {c: "" for c in COLUMNS}
    r.update(system=system, utt_id=utt, voice=voice, ref_speaker=voice, duration=2.0, **kw)
    return r


def _rows():
    rows = []
    for sysname, wer_hits in (("reference", 4), ("kalle", 3), ("kalle_ttt", 2)):
        for voice in ("slt", "rms"):
            for i in range(2):
                extra = {} if sysname == "reference" else dict(mcd=5.0 + i, log_f0_rmse=0.1, vuv_error=0.2,
                                                               synth_seconds=0.5, rtf=0.25)
                rows.append(_row(sysname, f"{voice}_{i}", voice, ref_words=4, hits=wer_hits,
                                 substitutions=4 - wer_hits, deletions=0, insertions=0,
                                 wer=(4 - wer_hits) / 4, sim_ref=0.8, sim_centroid=0.85, nearest_voice=voice,
                                 voice_correct=1, dnsmos_ovrl=2.8, dnsmos_sig=3.1, dnsmos_bak=3.9,
                                 dnsmos_p808=3.4, **extra))
    rows.append(_row("kalle", "extra", "slt", error="no hypothesis audio"))
    return rows


def _is_png(path):
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    width, height = struct.unpack(">II", data[16:24])
    return width > 50 and height > 50


def test_aggregate_uses_corpus_wer_and_total_rtf():
    rows = _rows()
    agg = aggregate([r for r in rows if r["system"] == "kalle"])
    assert agg["utts"] == 5 and agg["scored"] == 4 and agg["failed"] == 1
    assert agg["wer"] == pytest.approx(4 / 16)
    assert agg["rtf"] == pytest.approx(2.0 / 8.0)  # 4 x 0.5 s synthesis for 4 x 2 s audio
    assert agg["mcd"] == pytest.approx(5.5) and agg["mcd_std"] == pytest.approx(0.5)


def test_nearest_voice_is_chosen_once_per_group():
    rows = [{"voice_sims": {"A": 0.9, "B": 0.5}}, {"voice_sims": {"A": 0.3, "B": 0.6}},
            {"voice_sims": {"A": 0.6, "B": 0.55}}, {"error": "unreadable"}]
    st = nearest_voice_stats(rows)
    # Mean per voice: A 0.6, B 0.55 -> A; the per-utterance best (0.9, 0.6, 0.6) would give 0.7.
    assert st["sim_nearest_voice"] == "A" and st["sim_nearest"] == pytest.approx(0.6)
    assert st["sim_nearest_std"] == pytest.approx(np.std([0.9, 0.3, 0.6]))
    assert nearest_voice_stats([{"wer": 0.1}]) == {}


def test_parse_espnet_epoch_lines_skips_timespans():
    d = parse_epoch_lines(TRAIN_LOG.replace("\\\n", "").splitlines())
    assert d["train"]["loss"] == {1: 4.5, 2: 3.0, 3: 2.0}
    assert d["valid"]["loss"][1] == 4.8 and math.isnan(d["valid"]["loss"][3])
    assert "time" not in d["train"] and d["train"]["total_count"] == {1: 4.0}


def test_rtf_file_has_seconds_and_audio_seconds_or_the_ratio(tmp_path):
    """The decode stage's ``rtf`` file: ``utt synthesis_seconds audio_seconds``, or ``utt rtf``."""
    (tmp_path / "rtf").write_text("a 1.0 2.0\nb 3.0 2.0\n")
    read = read_rtf_file(tmp_path / "rtf")
    assert (read["a"].seconds, read["a"].audio_seconds, read["a"].rtf, read["b"].rtf) == (1.0, 2.0, 0.5, 1.5)
    (tmp_path / "rtf2").write_text("a 0.5\n\nb 0.25\n")
    assert {k: t.rtf for k, t in read_rtf_file(tmp_path / "rtf2").items()} == {"a": 0.5, "b": 0.25}
    (tmp_path / "bad").write_text("a 1 2 3\n")
    with pytest.raises(ValueError, match="bad:1"):
        read_rtf_file(tmp_path / "bad")


def test_write_report_tables_plots_latents_curves(tmp_path):
    exp = tmp_path / "exp" / "kalle"
    exp.mkdir(parents=True)
    (exp / "train.log").write_text(TRAIN_LOG.replace("\\\n", ""))
    lat = tmp_path / "latents"
    lat.mkdir()
    rng = np.random.default_rng(0)
    with open(lat / "feats.scp", "w") as f:
        for i in range(3):
            arr = np.concatenate([rng.standard_normal((20, 8)), np.full((20, 8), -1.0)], 1).astype(np.float32)
            np.save(lat / f"u{i}.npy", arr)
            f.write(f"u{i} {lat / f'u{i}.npy'}\n")
    run = ScoreRun(rows=_rows(), unavailable={"dnsmos": "speechmos: not available (pip install "
                                                          "espnet-kalle[score])"},
                   scorers={"wer": "asr", "sim": "enc", "mcd": "world"})
    written = write_report(tmp_path / "scoring", run, "test set", [lat / "feats.scp"], [exp])
    md = written["results"].read_text()
    for system in ("reference", "kalle", "kalle_ttt"):
        assert f"|{system}|" in md
    assert "|system|Snt|WER (%)|" in md and "|kalle|rms|2|" in md
    assert "dnsmos: speechmos: not available (pip install espnet-kalle[score])" in md
    assert "DNSMOS OVRL" not in md  # an unavailable metric gets no column
    assert "### Flow-VAE latents" in md
    pngs = sorted((tmp_path / "scoring" / "plots").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"metrics_per_system.png", "metrics_per_voice.png"} <= names
    assert any(n.startswith("latents_") for n in names) and any(n.startswith("train_") for n in names)
    assert all(_is_png(p) for p in pngs)
    for p in pngs:
        assert f"plots/{p.name}" in md
    assert len(load_curves(exp)[0].series["train"]["loss"]) == 3
    tsv = written["tsv"].read_text().splitlines()
    assert tsv[0].split("\t") == COLUMNS and len(tsv) == 1 + len(run.rows)
