"""Per-token durations from flite phone timings (recipe, for guided attention): the progress mapping by hand, the
diagonal without timings, and the file the ESPnet trainer reads."""

from espnet_kalle.kaldi_io import read_kaldi_map
from espnet_kalle.recipe.token_durations import main, parse_timings, token_durations

# 1.0 s: a pause to 0.2 s, two spoken phones of 0.2 s each, a pause to the end; 10 frames of 0.1 s, 4 tokens
TIMINGS = "pau:0.2 a:0.4 b:0.6 pau:1.0"


def test_frames_follow_the_spoken_phones_not_the_diagonal():
    # Frame centres 0.05 .. 0.95 s. Phones said at each: 0, 0, 0.25, 0.75, 1.25, 1.75, then 2 (of 2): share x 4
    # tokens -> token 0, 0, 0, 1, 2, 3, 3, 3, 3, 3.
    assert token_durations(4, 10, 1.0, parse_timings(TIMINGS)).tolist() == [3, 1, 1, 5]
    assert token_durations(4, 10, 1.0, None).tolist() == [2, 3, 2, 3]  # the diagonal: token n from frame n x 10 / 4
    assert token_durations(3, 2, 1.0, parse_timings(TIMINGS)).tolist() == [1, 0, 1]  # fewer frames than tokens


def test_the_durations_file_covers_every_utterance(tmp_path, capsys):
    (tmp_path / "timings").write_text(f"u1 {TIMINGS}\n")
    (tmp_path / "text_shape").write_text("u1 4\nu2 3\n")
    (tmp_path / "speech_shape").write_text("u1 10,704\nu2 6,704\n")
    (tmp_path / "utt2num_samples").write_text("u1 16000\nu2 9600\n")
    args = ["--timings", str(tmp_path / "timings"), "--text_shape", str(tmp_path / "text_shape"),
            "--speech_shape", str(tmp_path / "speech_shape"), "--utt2num_samples", str(tmp_path / "utt2num_samples"),
            "--out", str(tmp_path / "durations")]
    assert main(args) == 0
    assert read_kaldi_map(tmp_path / "durations") == {"u1": "3 1 1 5", "u2": "2 2 2"}
    assert "1 utterances from phone timings, 1 on the diagonal" in capsys.readouterr().out
    (tmp_path / "utt2num_samples").write_text("u1 16000\n")
    assert main(args) == 2 and "u2: in" in capsys.readouterr().err
    assert main(args[:-2] + ["--out", str(tmp_path / "x"), "--fs", "8000", "--text_shape", str(tmp_path / "no")]) == 2
