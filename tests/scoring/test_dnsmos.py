import numpy as np
import pytest


@pytest.fixture(scope="module")
def dnsmos():
    pytest.importorskip("speechmos", reason="speechmos not installed (pip install espnet-kalle[score])")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install espnet-kalle[score])")
    from espnet_kalle.scoring.runner import build_scorer

    return build_scorer("dnsmos")


def test_dnsmos_range_and_noise_is_worse(dnsmos, flite_corpus, white_noise):
    clean = dnsmos.score(flite_corpus.audio("rms_0"), 16000)
    assert set(clean) == {"ovrl", "sig", "bak", "p808"}
    assert all(np.isfinite(v) and 1.0 <= v <= 5.0 for v in clean.values())
    a = flite_corpus.audio("rms_0")
    noisy = dnsmos.score(np.clip(a + np.resize(white_noise, len(a)), -1, 1), 16000)
    assert noisy["bak"] < clean["bak"] and noisy["ovrl"] < clean["ovrl"]
