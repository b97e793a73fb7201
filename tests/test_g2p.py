"""Phoneme input (``token_type: phn``, ESPnet's ``espeak_ng_english_us_vits`` g2p) from a pip install, offline.

The LM sees the ids ESPnet's training preprocessor made; inference must make the same ones from the same text.
"""

import os
import subprocess
import sys

import pytest

from espnet_kalle import g2p
from espnet_kalle.text import TextError, Tokenizer

G2P = "espeak_ng_english_us_vits"
SENTENCES = ["The wings of birds were clogged with ice and snow.", "Dr. Smith read 42 books, didn't he?",
             "Good morning!"]


@pytest.fixture(scope="module")
def phoneme_token_list():
    """A token list the way the recipe's stage 3 builds it (ESPnet layout), from the sentences' phonemes."""
    g2p.prepare_g2p(G2P)
    from espnet2.text.cleaner import TextCleaner
    from espnet2.text.phoneme_tokenizer import PhonemeTokenizer

    tokenizer, cleaner = PhonemeTokenizer(G2P), TextCleaner("tacotron")
    phonemes = sorted({t for s in SENTENCES for t in tokenizer.text2tokens(cleaner(s))})
    return ["<blank>", "<unk>", *phonemes, "<sos/eos>"]


def test_bundled_espeak_is_used_unless_the_user_names_one(monkeypatch):
    import espeakng_loader

    monkeypatch.delenv(g2p.LIBRARY_VARIABLE, raising=False)
    monkeypatch.delenv(g2p.DATA_VARIABLE, raising=False)
    assert g2p.use_bundled_espeak() == str(espeakng_loader.get_library_path())
    assert os.environ[g2p.DATA_VARIABLE] == str(espeakng_loader.get_data_path())
    monkeypatch.setenv(g2p.LIBRARY_VARIABLE, "/opt/my/libespeak-ng.so")
    assert g2p.use_bundled_espeak() == "/opt/my/libespeak-ng.so"


def test_inference_ids_match_espnet_training_preprocessing(phoneme_token_list):
    from espnet2.train.preprocessor import CommonPreprocessor

    training = CommonPreprocessor(train=False, token_type="phn", token_list=phoneme_token_list,
                                  text_cleaner="tacotron", g2p_type=G2P)
    inference = Tokenizer(phoneme_token_list, token_type="phn", cleaner="tacotron", g2p=G2P)
    for sentence in SENTENCES:
        expected = training("utt", {"text": sentence})["text"].tolist()
        assert inference(sentence) == expected, sentence
    ids = inference("Good morning!")
    tokens = [phoneme_token_list[i] for i in ids]
    assert "ɡ" in tokens and "ˈ" in tokens and "<unk>" not in tokens  # phonemes with stress, not letters
    assert tokens[-1] == "!" and ids[-1] in inference.sentence_end_ids


def test_phoneme_text_errors_are_clear(phoneme_token_list):
    inference = Tokenizer(phoneme_token_list, token_type="phn", cleaner="tacotron", g2p=G2P)
    for text in ("", "   ", "?!..."):
        with pytest.raises(TextError):
            inference(text)


def test_fresh_process_phonemizes_offline(tmp_path, phoneme_token_list):
    """No espeak-ng from the system, no NLTK data: the tokenizer still works, and nothing is downloaded."""
    env = {k: v for k, v in os.environ.items() if k not in (g2p.LIBRARY_VARIABLE, g2p.DATA_VARIABLE)}
    env.update(NLTK_DATA=str(tmp_path), PATH="/nonexistent")  # no espeak binary on PATH either
    code = ("import sys; from espnet_kalle.text import Tokenizer; "
            f"t = Tokenizer({phoneme_token_list!r}, token_type='phn', cleaner='tacotron', g2p={G2P!r}); "
            "print(len(t('The wings of birds.')))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) > 10
    assert "[nltk_data]" not in proc.stdout + proc.stderr  # nltk's downloader never started (refused first)
    assert not list(tmp_path.iterdir())


def test_nltk_downloads_are_refused_and_logged(tmp_path, monkeypatch, caplog):
    import logging

    import nltk

    monkeypatch.setattr(nltk, "download", nltk.download)  # restored after the test
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    g2p.refuse_nltk_downloads()
    with caplog.at_level(logging.INFO, logger="espnet_kalle.g2p"):
        assert nltk.download("cmudict") is False
    assert "not downloading NLTK data 'cmudict'" in caplog.text
    assert not list(tmp_path.iterdir())


def test_phonemes_the_model_lacks_are_dropped_with_a_warning(phoneme_token_list, caplog):
    without_theta = [t for t in phoneme_token_list if t != "θ"]
    inference = Tokenizer(without_theta, token_type="phn", cleaner="tacotron", g2p=G2P)
    with caplog.at_level("WARNING", logger="espnet_kalle.text"):
        ids = inference("Three thin things.")
    assert "cannot say: θ" in caplog.text
    assert ids and without_theta.index("<unk>") not in ids
