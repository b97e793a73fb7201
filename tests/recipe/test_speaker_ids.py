"""espnet_kalle.recipe.speaker_ids: ESPnet's spk2sid / utt2sid layout for the LM's other-utterance speaker input."""

import pytest

from espnet_kalle.recipe.speaker_ids import main, write_speaker_ids


def _data_dir(root, pairs):
    root.mkdir(parents=True)
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in pairs))
    return root


def test_training_speakers_numbered_from_one_unknown_is_zero(tmp_path):
    train = _data_dir(tmp_path / "train", [("slt_1", "slt"), ("awb_2", "awb"), ("slt_3", "slt")])
    dev = _data_dir(tmp_path / "dev", [("rms_9", "rms"), ("awb_8", "awb")])
    mapping = write_speaker_ids(train, [train, dev])
    assert mapping == {"<unk>": 0, "awb": 1, "slt": 2}
    assert (train / "spk2sid").read_text() == "<unk> 0\nawb 1\nslt 2\n"
    assert (train / "utt2sid").read_text() == "awb_2 1\nslt_1 2\nslt_3 2\n"
    assert (dev / "utt2sid").read_text() == "awb_8 1\nrms_9 0\n"  # a speaker train lacks: unknown


def test_cli_errors_are_clear(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--train", str(tmp_path / "missing"), "--sets", str(tmp_path / "missing")])
    assert e.value.code == 2 and "utt2spk not found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "utt2spk").write_text("only_one_field\n")
    with pytest.raises(SystemExit):
        main(["--train", str(bad), "--sets", str(bad)])
    assert "expected 'utt_id speaker'" in capsys.readouterr().err
    ok = _data_dir(tmp_path / "ok", [("a_1", "a")])
    assert main(["--train", str(ok), "--sets", str(ok)]) == 0
    assert (ok / "utt2sid").read_text() == "a_1 1\n"
