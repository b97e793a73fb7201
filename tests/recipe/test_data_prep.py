"""Stage 1 of egs/kalle/tts1 through the real local/data.sh: the mini corpus (flite) and fake real-corpus layouts.

Needs the Debian packages flite, sox and wordnet-base (data.sh prints the apt command when one is missing).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_kalle.kaldi_io import read_kaldi_map
from espnet_kalle.recipe import format_data
from espnet_kalle.recipe.kaldi_dir import Utterance, read_data_dir, validate_data_dir, write_data_dir
from espnet_kalle.recipe.mini_corpus import plan_corpus
from espnet_kalle.recipe.sentences import load_sentences, normalize, sample_sentences, sentence_key
from espnet_kalle.recipe.voices import parse_voices

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "kalle" / "tts1"
DATA_SH = RECIPE / "local" / "data.sh"
SPLITS = ("train", "dev", "test")


def run_data_sh(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """local/data.sh as the stage driver calls it: from the recipe dir, with this interpreter."""
    return subprocess.run(
        ["bash", str(DATA_SH), "--python", sys.executable, *args],
        cwd=RECIPE, capture_output=True, text=True, timeout=300, env=env,
    )


def load_splits(data_dir: Path) -> dict[str, list[Utterance]]:
    out = {}
    for split in SPLITS:
        validate_data_dir(data_dir / split)  # sorted, same ids everywhere, spk2utt = inverse of utt2spk
        out[split] = read_data_dir(data_dir / split)
    return out


def assert_disjoint_by_sentence(splits: dict[str, list[Utterance]]) -> None:
    keys = {s: {sentence_key(u.text) for u in utts} for s, utts in splits.items()}
    assert not keys["train"] & keys["dev"]
    assert not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]


def write_wav(path: Path, seconds: float = 0.05, sr: int = 22050) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)


# ------------------------------------------------------------------ mini
@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    proc = run_data_sh(
        "--dataset", "mini", "--datadir", str(root / "data"), "--mini_dir", str(root / "downloads"),
        "--num_sentences", "30", "--num_test", "4", "--num_dev", "3", "--voices", "slt,rms_high", "--nj", "2",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def test_mini_dirs_are_valid_and_audio_is_16k_mono(mini):
    splits = load_splits(mini / "data")
    assert [len(splits[s]) for s in SPLITS] == [23, 3, 4]
    for utts in splits.values():
        for u in utts:
            info = sf.info(u.wav)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), u
            assert info.frames > 16000 * 0.5, u  # a 4+ word sentence lasts well over half a second
            assert u.utt_id.startswith(u.speaker + "-")
            assert u.text[0].isupper() and u.text[-1] in ".?!" and u.text.isascii()
            assert not any(c.isdigit() for c in u.text)
    audio, _ = sf.read(splits["test"][0].wav)
    assert np.abs(audio).max() > 0.05  # speech, not silence


def test_mini_splits_disjoint_and_every_voice_everywhere(mini):
    splits = load_splits(mini / "data")
    assert_disjoint_by_sentence(splits)
    for utts in splits.values():
        assert {u.speaker for u in utts} == {"slt", "rms_high"}
    all_keys = [sentence_key(u.text) for utts in splits.values() for u in utts]
    assert len(set(all_keys)) == len(all_keys) == 30  # one voice per sentence by default


def test_mini_rerun_reuses_audio_and_is_deterministic(mini, tmp_path):
    before = (mini / "data" / "test" / "text").read_text()
    proc = run_data_sh(
        "--dataset", "mini", "--datadir", str(tmp_path / "data"), "--mini_dir", str(mini / "downloads"),
        "--num_sentences", "30", "--num_test", "4", "--num_dev", "3", "--voices", "slt,rms_high", "--nj", "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "synthesised 0, reused 30" in proc.stdout
    assert (tmp_path / "data" / "test" / "text").read_text() == before


def test_mini_keeps_flite_phone_timings_that_match_the_audio(mini, tmp_path):
    for split, utts in load_splits(mini / "data").items():
        lines = (mini / "data" / split / "phone_timings").read_text().splitlines()
        assert [line.split()[0] for line in lines] == [u.utt_id for u in utts]  # same ids, same order as text
        for line, u in zip(lines, utts):
            segments = [token.rsplit(":", 1) for token in line.split()[1:]]
            ends = [float(end) for _, end in segments]
            assert ends == sorted(ends) and len(segments) >= 2 * len(u.text.split())  # phones, not words
            assert segments[0][0] == segments[-1][0] == "pau"
            assert ends[-1] == pytest.approx(sf.info(u.wav).duration, abs=0.02)  # they end with the audio
    # a corpus made before timings were kept gets them on the next run (the recording is made again)
    first = load_splits(mini / "data")["train"][0]
    sidecar = Path(first.wav).with_suffix(".phones")
    kept = sidecar.read_text()
    sidecar.unlink()
    proc = run_data_sh(
        "--dataset", "mini", "--datadir", str(tmp_path / "data"), "--mini_dir", str(mini / "downloads"),
        "--num_sentences", "30", "--num_test", "4", "--num_dev", "3", "--voices", "slt,rms_high", "--nj", "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "synthesised 1, reused 29" in proc.stdout and sidecar.read_text() == kept
    # stage 2 carries them with the utterances it keeps
    dump = tmp_path / "dump"
    src = mini / "data" / "dev"
    for args in (["--job", "1", "--nj", "1"], ["--merge", "1", "--min_seconds", "0.5", "--max_seconds", "2.6"]):
        assert format_data.main(["--src", str(src), "--dst", str(dump), "--fs", "16000", *args]) == 0
    kept = read_kaldi_map(dump / "text")
    assert 0 < len(kept) < 3  # the range drops at least one of the three
    source = read_kaldi_map(src / "phone_timings")
    assert read_kaldi_map(dump / "phone_timings") == {u: source[u] for u in kept}


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None or not Path("/usr/share/mbrola/us1").exists(),
    reason="optional MBROLA voices not installed (espeak-ng mbrola mbrola-us1 mbrola-en1; contrib/non-free)",
)
def test_mini_optional_mbrola_voices(tmp_path):
    proc = run_data_sh(
        "--dataset", "mini", "--datadir", str(tmp_path / "data"), "--mini_dir", str(tmp_path / "dl"),
        "--num_sentences", "8", "--num_test", "2", "--num_dev", "2", "--voices", "mb_us1,mb_en1",
    )
    assert proc.returncode == 0, proc.stderr
    splits = load_splits(tmp_path / "data")
    assert {u.speaker for u in splits["test"]} == {"mb_us1", "mb_en1"}
    assert all(sf.info(u.wav).samplerate == 16000 for utts in splits.values() for u in utts)
    assert "NON-COMMERCIAL" in (tmp_path / "dl" / "README.txt").read_text()


def test_mini_missing_tools_print_apt_command(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the basics but without flite and sox
    bin_dir.mkdir()
    for tool in ("date", "basename", "dirname", "bash", "env"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {**os.environ, "PATH": str(bin_dir)}
    proc = run_data_sh("--dataset", "mini", "--datadir", str(tmp_path / "data"), env=env)
    assert proc.returncode != 0
    assert "apt-get install flite sox" in proc.stderr


def test_sentence_source_has_3000_distinct_normalized_sentences():
    (sentences,) = load_sentences()
    assert len(sentences) >= 3000
    assert len({sentence_key(s) for s in sentences}) == len(sentences)
    for s in sentences[:: max(1, len(sentences) // 500)]:
        assert s == normalize(s), s
        assert 4 <= len(s.split()) <= 25 and s.isascii()


def test_glosses_extend_the_examples_without_changing_a_corpus_they_already_fill():
    examples, glosses = load_sentences(sources=["examples", "glosses"])
    assert len(glosses) > 2 * len(examples)  # definitions: a corpus several times larger
    assert not {sentence_key(t) for t in glosses} & {sentence_key(t) for t in examples}
    for t in glosses[:: max(1, len(glosses) // 300)]:
        assert t == normalize(t) and 4 <= len(t.split()) <= 25, t
    assert "Away from the outer edge." in glosses  # a definition, not an example
    small = sample_sentences([examples], 1000, seed=1)
    before = sorted(examples)
    random.Random(1).shuffle(before)  # the rule every corpus so far was drawn by (mini-en's included)
    assert small == before[:1000]
    assert sample_sentences([examples, glosses], 1000, seed=1) == small  # same test, dev and train sentences
    large = sample_sentences([examples, glosses], len(examples) + 500, seed=1)
    assert large[:1000] == small and set(large[len(examples):]) <= set(glosses)
    with pytest.raises(ValueError, match="examples,glosses"):
        sample_sentences([examples], len(examples) + 1, seed=1)
    with pytest.raises(ValueError, match="unknown sentence source"):
        load_sentences(sources=["novels"])


def test_normalize_rules():
    assert normalize("the café was closed; nobody came") == "The cafe was closed, nobody came."
    assert normalize("he was born in 1990 in Ohio") is None  # digits are dropped, not guessed
    assert normalize("the word `dog' is animate") is None
    assert normalize("see Dr. Smith about it") is None  # abbreviation
    assert normalize("far too short") is None
    assert normalize("Why not go home?") == "Why not go home?"


def test_plan_with_several_voices_per_sentence(tmp_path):
    voices = parse_voices("slt,rms,awb")
    sentences = [f"Sentence number {w} is here." for w in "abcdefghij"]
    plan = plan_corpus(sentences, voices, tmp_path, num_test=3, num_dev=3, voices_per_sentence=2)
    assert [len(plan[s]) for s in SPLITS] == [8, 6, 6]
    for utts in plan.values():
        by_sentence: dict[str, set[str]] = {}
        for u in utts:
            by_sentence.setdefault(u.text, set()).add(u.speaker)
        assert all(len(spks) == 2 for spks in by_sentence.values())  # two different voices read each
        assert {u.speaker for u in utts} == {"slt", "rms", "awb"}
    with pytest.raises(ValueError, match="every voice"):
        plan_corpus(sentences, voices, tmp_path, num_test=1, num_dev=3)


def test_write_data_dir_rejects_inconsistent_speaker_order(tmp_path):
    utts = [Utterance("19_1", "19", "/a.wav", "a b"), Utterance("190_1", "190", "/b.wav", "c d")]
    with pytest.raises(ValueError, match="sort"):
        write_data_dir(tmp_path / "bad", utts)
    good = [Utterance("19-1", "19", "/a.wav", "a b"), Utterance("190-1", "190", "/b.wav", "c d")]
    validate_data_dir(write_data_dir(tmp_path / "good", good))


# ------------------------------------------------------------------ real-corpus layouts (tiny fakes)
def fake_ljspeech(root: Path, n: int = 510) -> Path:
    corpus = root / "LJSpeech-1.1"
    lines = []
    for i in range(n):
        utt = f"LJ{1 + i // 100:03d}-{1 + i % 100:04d}"
        write_wav(corpus / "wavs" / f"{utt}.wav", seconds=0.01)
        lines.append(f"{utt}|Raw text {i}, Mr. Smith.|Normalized text number {i}, mister Smith.")
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    return corpus


def fake_libritts_r(root: Path) -> Path:
    corpus = root / "LibriTTS_R"
    layout = {
        "train-clean-100": [("19", "198"), ("190", "5")],
        "train-clean-360": [("26", "495")],
        "dev-clean": [("84", "121123")],
        "test-clean": [("121", "121726"), ("1089", "134686")],
    }
    for subset, chapters in layout.items():
        for spk, chap in chapters:
            for j in range(3):
                stem = f"{spk}_{chap}_000000_{j:06d}"
                write_wav(corpus / subset / spk / chap / f"{stem}.wav", sr=24000)
                (corpus / subset / spk / chap / f"{stem}.normalized.txt").write_text(f"{subset} {spk} sentence {j}.")
                (corpus / subset / spk / chap / f"{stem}.original.txt").write_text(f"{subset} {spk} sentence {j}.")
    return corpus


def fake_vctk(root: Path) -> Path:
    corpus = root / "VCTK-Corpus-0.92"
    for spk in ("p225", "p226", "p315", "s5"):
        for n in range(1, 9):
            utt = f"{spk}_{n:03d}"
            write_wav(corpus / "wav48_silence_trimmed" / spk / f"{utt}_mic1.flac", sr=48000)
            write_wav(corpus / "wav48_silence_trimmed" / spk / f"{utt}_mic2.flac", sr=48000)
            if spk == "p315":  # VCTK 0.92 has no transcripts for p315
                continue
            text = "Please call Stella." if n == 1 else f"Speaker {spk} reads newspaper sentence {n}."
            (corpus / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (corpus / "txt" / spk / f"{utt}.txt").write_text(text + "\n")
    return corpus


def test_ljspeech_prep(tmp_path):
    corpus = fake_ljspeech(tmp_path)
    proc = run_data_sh("--dataset", "ljspeech", "--corpus_dir", str(corpus), "--datadir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    splits = load_splits(tmp_path / "data")
    assert [len(splits[s]) for s in SPLITS] == [10, 250, 250]  # ESPnet's split: last 500 -> 250 dev + 250 test
    assert splits["train"][0].utt_id == "LJ001-0001" and splits["train"][0].speaker == "LJ"
    assert splits["train"][0].text == "Normalized text number 0, mister Smith."
    assert all(Path(u.wav).is_file() for utts in splits.values() for u in utts)


def test_libritts_r_prep_uses_standard_subsets(tmp_path):
    corpus = fake_libritts_r(tmp_path)
    proc = run_data_sh("--dataset", "libritts_r", "--corpus_dir", str(tmp_path), "--datadir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    splits = load_splits(tmp_path / "data")
    assert {u.speaker for u in splits["train"]} == {"19", "190", "26"}
    assert {u.speaker for u in splits["dev"]} == {"84"}
    assert {u.speaker for u in splits["test"]} == {"121", "1089"}
    assert "19-198-000000-000000" in {u.utt_id for u in splits["train"]}
    assert all(Path(u.wav).is_file() and u.wav.startswith(str(corpus)) for u in splits["train"])


def test_libritts_r_missing_subset_names_it(tmp_path):
    corpus = fake_libritts_r(tmp_path)
    shutil.rmtree(corpus / "train-clean-360")
    proc = run_data_sh("--dataset", "libritts_r", "--corpus_dir", str(corpus), "--datadir", str(tmp_path / "data"))
    assert proc.returncode != 0
    assert "train-clean-360" in proc.stderr and "openslr.org/141" in proc.stderr


def test_vctk_prep_holds_out_per_speaker_disjoint_sentences(tmp_path):
    fake_vctk(tmp_path)
    proc = run_data_sh("--dataset", "vctk", "--corpus_dir", str(tmp_path), "--datadir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    splits = load_splits(tmp_path / "data")
    assert_disjoint_by_sentence(splits)
    for split in ("dev", "test"):
        assert {u.speaker for u in splits[split]} == {"p225", "p226", "s5"}  # p315 has no text
        assert len(splits[split]) == 2 * 3
    assert all(u.wav.endswith("_mic1.flac") for utts in splits.values() for u in utts)
    assert sum("Stella" in u.text for u in splits["train"]) == 3  # the shared sentence stays in train


@pytest.mark.parametrize("dataset", ["ljspeech", "libritts_r", "vctk"])
def test_missing_corpus_gives_download_hint(dataset, tmp_path):
    proc = run_data_sh("--dataset", dataset, "--corpus_dir", str(tmp_path / "nope"), "--datadir", str(tmp_path / "d"))
    assert proc.returncode != 0
    assert "Download it yourself from https://" in proc.stderr
    assert not (tmp_path / "d").exists()
