import numpy as np
import pytest

from espnet_kalle.scoring.speaker_sim import centroids, cosine, nearest_voice


def test_centroid_and_nearest_voice_math():
    e = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    cents = centroids([("A", e["a"]), ("A", np.array([1.0, 0.1])), ("B", e["b"])])
    assert nearest_voice(np.array([0.9, 0.2]), cents)[0] == "A"
    assert cosine(e["a"], e["b"]) == pytest.approx(0.0)
    assert np.linalg.norm(cents["A"]) == pytest.approx(1.0, abs=1e-6)


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("resemblyzer", reason="resemblyzer not installed (pip install espnet-kalle[score])")
    from espnet_kalle.scoring.runner import build_scorer

    return build_scorer("sim")


def test_same_voice_more_similar_than_other_voice(encoder, flite_corpus):
    emb = {u: encoder.embed(flite_corpus.audio(u), 16000) for u in ("slt_0", "slt_1", "rms_0", "rms_1")}
    same = min(cosine(emb["slt_0"], emb["slt_1"]), cosine(emb["rms_0"], emb["rms_1"]))
    different = max(cosine(emb["slt_0"], emb["rms_0"]), cosine(emb["slt_1"], emb["rms_1"]))
    assert same > different
    cents = centroids([("slt", emb["slt_0"]), ("rms", emb["rms_0"])])
    assert nearest_voice(emb["slt_1"], cents)[0] == "slt"
    assert nearest_voice(emb["rms_1"], cents)[0] == "rms"
