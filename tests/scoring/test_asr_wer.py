import numpy as np
import pytest

from espnet_kalle.pcm import to_int16
from espnet_kalle.scoring.asr_wer import WordErrors, normalize_text, sum_errors, word_errors

pytest.importorskip("jiwer", reason="jiwer not installed (pip install espnet-kalle[score])")


def test_normalize_text_case_punctuation_digits():
    assert normalize_text("Hello, World!  It's 3 o'clock -- well-known.") == "hello world it's three o'clock well known"
    assert normalize_text("Café “quoted”") == "cafe quoted"


def test_word_errors_counts_and_corpus_total():
    e = word_errors("The cat sat.", "the bat sat on")
    assert (e.ref_words, e.hits, e.substitutions, e.deletions, e.insertions) == (3, 2, 1, 0, 1)
    assert e.wer == pytest.approx(2 / 3)
    empty = word_errors("one two", "")
    assert empty.deletions == 2 and empty.wer == 1.0
    total = sum_errors([e, empty])
    assert isinstance(total, WordErrors) and total.wer == pytest.approx(4 / 5)


def test_to_int16_rounds_exactly():
    x = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    assert np.array_equal(to_int16(x.astype(np.float32) / 32767.0), np.clip(x, -32767, 32767))
    assert to_int16(np.array([1.5], dtype=np.float32))[0] == 32767  # clipped, not wrapped
    assert to_int16(np.array([0.7, -0.7, 2.6], dtype=np.float32) / 32767).tolist() == [1, -1, 3]  # not truncated


@pytest.fixture(scope="module")
def asr():
    pytest.importorskip("pocketsphinx", reason="pocketsphinx not installed (pip install espnet-kalle[score])")
    from espnet_kalle.scoring.runner import build_scorer

    return build_scorer("wer")  # shared with the CLI test: models load once per process


def test_clean_speech_low_wer_noise_high(asr, flite_corpus, white_noise):
    utts = ["slt_0", "slt_1", "rms_2"]
    errs = [word_errors(flite_corpus.text[u], asr.transcribe(flite_corpus.audio(u), 16000)) for u in utts]
    assert sum_errors(errs).wer < 0.40
    noise = word_errors(flite_corpus.text["slt_0"], asr.transcribe(white_noise, 16000))
    assert noise.wer > 0.80


def test_whisper_needs_local_weights(tmp_path):
    from espnet_kalle.scoring.asr_wer import make_asr

    with pytest.raises(FileNotFoundError, match="never downloaded"):
        make_asr(whisper="openai/whisper-tiny")
    with pytest.raises(ValueError, match="Hugging Face Whisper dir"):
        make_asr(whisper=str(tmp_path))
