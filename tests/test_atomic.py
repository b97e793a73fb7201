"""Atomic writes: a reader sees the old file or the whole new one, and a failed write leaves nothing behind."""

import pytest

from espnet_kalle.atomic import atomic_path, write_text_atomic


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "wav.scp"
    target.write_text("old\n")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new\n")
        assert target.read_text() == "old\n"  # not yet: readers still see the old file
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["wav.scp"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "model.yaml"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model.yaml"]


def test_write_text_atomic_and_a_suffix_for_format_sniffing_writers(tmp_path):
    write_text_atomic(tmp_path / "text", "a hello\n")
    assert (tmp_path / "text").read_text() == "a hello\n"
    with atomic_path(tmp_path / "x.wav", suffix=".wav") as tmp:
        assert tmp.suffix == ".wav"
        tmp.write_bytes(b"RIFF")
    assert (tmp_path / "x.wav").read_bytes() == b"RIFF"
