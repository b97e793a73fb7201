import numpy as np
import pytest

pytest.importorskip("pyworld", reason="pyworld not installed (pip install espnet-kalle[score])")

from espnet_kalle.scoring.mcd import mcd_f0, mel_cepstrum, warp_frequency  # noqa: E402


def test_mel_cepstrum_of_flat_envelope_is_its_level():
    c = mel_cepstrum(np.full((2, 513), 4.0), order=23, alpha=0.41)
    assert c[0, 0] == pytest.approx(np.log(2.0))  # log amplitude of power 4
    assert np.allclose(c[:, 1:], 0.0, atol=1e-9)


def test_warp_is_inverted_by_negative_alpha():
    w = np.linspace(0, np.pi, 50)
    assert np.allclose(warp_frequency(warp_frequency(w, 0.41), -0.41), w, atol=1e-9)


def test_dtw_path_is_optimal_and_monotonic():
    from scipy.spatial.distance import cdist

    from espnet_kalle.scoring.mcd import dtw_path

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((9, 3)), rng.standard_normal((6, 3))
    c = cdist(a, b)
    acc = np.full((10, 7), np.inf)
    acc[0, 0] = 0
    for i in range(1, 10):
        for j in range(1, 7):
            acc[i, j] = c[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    p = dtw_path(a, b)
    assert tuple(p[0]) == (0, 0) and tuple(p[-1]) == (8, 5)
    assert np.all(np.diff(p, axis=0) >= 0) and np.all(np.diff(p, axis=0).sum(1) >= 1)
    assert c[p[:, 0], p[:, 1]].sum() == pytest.approx(acc[9, 6])


def test_identical_is_zero_and_other_voice_is_not(flite_corpus):
    a = flite_corpus.audio("slt_0")
    same = mcd_f0(a, a.copy(), 16000)
    assert same.mcd == 0.0 and same.log_f0_rmse == 0.0 and same.vuv_error == 0.0
    other = mcd_f0(a, flite_corpus.audio("rms_0"), 16000)
    assert other.mcd > 3.0  # two voices, same text: several dB
    assert other.log_f0_rmse > 0.1  # a female and a male voice
    assert np.isfinite(other.vuv_error) and other.frames >= len(a) // 80
