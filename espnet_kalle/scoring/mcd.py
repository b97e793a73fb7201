"""Spectral and prosodic distance to the reference recording: MCD-DTW, log-F0 RMSE and V/UV error.

WORLD (pyworld) analyses both signals at a 5 ms frame period; the spectral envelope becomes a mel-cepstrum by
sampling the log power envelope on an all-pass-warped frequency axis and taking its real cepstrum (what SPTK's
``sp2mc`` computes, without needing pysptk, which has no wheel for every Python). DTW over the mel-cepstra
(c1..cM, c0 = energy is excluded as usual) aligns hypothesis and reference; the same path aligns F0, so the
three numbers describe one alignment. MCD uses the conventional ``10 / ln 10 * sqrt(2 * sum dc^2)`` in dB.

Both signals get the same seeded 1-LSB (16-bit) dither before analysis: a band that is digitally empty (a
low-passed or band-limited hypothesis, exact zeros in pauses) would otherwise sit at the log floor and dominate
the distance (a 2 kHz low-pass scores ~34 dB without it, ~18 dB with it). Identical inputs stay at exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Tuple

import numpy as np

from espnet_kalle.scoring.deps import require

FRAME_PERIOD_MS = 5.0
_MCD_CONST = 10.0 / math.log(10.0) * math.sqrt(2.0)


def mcep_params(sample_rate: int) -> Tuple[int, float]:
    """(order M, all-pass alpha) commonly used per sample rate (alpha approximates the mel scale)."""
    table = {8000: (13, 0.31), 16000: (23, 0.41), 22050: (34, 0.45), 24000: (34, 0.46), 44100: (39, 0.53),
             48000: (39, 0.55)}
    if sample_rate not in table:
        raise ValueError(f"no mel-cepstrum parameters for {sample_rate} Hz; use one of {sorted(table)}")
    return table[sample_rate]


@dataclass
class WorldFeatures:
    f0: np.ndarray  # [N] Hz, 0 where unvoiced
    mcep: np.ndarray  # [N, M + 1] mel-cepstrum c0..cM


def warp_frequency(omega: np.ndarray, alpha: float) -> np.ndarray:
    """Phase response of the first-order all-pass ``(z^-1 - alpha) / (1 - alpha z^-1)`` (its inverse is -alpha)."""
    return omega + 2.0 * np.arctan(alpha * np.sin(omega) / (1.0 - alpha * np.cos(omega)))


def mel_cepstrum(power_envelope: np.ndarray, order: int, alpha: float) -> np.ndarray:
    """[N, fft/2+1] power spectral envelope -> [N, order+1] mel-cepstrum (minimum-phase convention, as SPTK)."""
    bins = power_envelope.shape[1]
    warped = np.linspace(0.0, np.pi, bins)
    linear = warp_frequency(warped, -alpha)  # the linear frequency each warped bin reads from
    pos = linear / np.pi * (bins - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, bins - 2)
    frac = pos - lo
    log_power = np.log(np.maximum(power_envelope, 1e-16))
    log_warped = log_power[:, lo] * (1.0 - frac) + log_power[:, lo + 1] * frac
    c = np.fft.irfft(log_warped, axis=1)[:, : order + 1]
    c[:, 0] /= 2.0  # log power -> log amplitude for c0; c1.. are the causal coefficients of log amplitude
    return c


def world_features(
    wav: np.ndarray, sample_rate: int, f0_method: Literal["dio", "harvest"] = "dio"
) -> WorldFeatures:
    """F0 (dio + stonemask, or harvest: slower, fewer octave errors) and the mel-cepstrum of CheapTrick."""
    pw = require("pyworld")
    x = np.asarray(wav, dtype=np.float64)
    x = x + np.random.default_rng(0).standard_normal(len(x)) / 32768.0
    if f0_method == "harvest":
        f0, t = pw.harvest(x, sample_rate, frame_period=FRAME_PERIOD_MS)
    elif f0_method == "dio":
        f0, t = pw.dio(x, sample_rate, frame_period=FRAME_PERIOD_MS)
        f0 = pw.stonemask(x, f0, t, sample_rate)
    else:
        raise ValueError(f"f0_method must be 'dio' or 'harvest', got {f0_method!r}")
    sp = pw.cheaptrick(x, f0, t, sample_rate)
    order, alpha = mcep_params(sample_rate)
    return WorldFeatures(f0=f0, mcep=mel_cepstrum(sp, order, alpha))


def dtw_path(ref: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """Minimum Euclidean-cost monotonic alignment of [N, D] and [M, D] -> [P, 2] index pairs in time order.

    Steps (1, 1), (1, 0), (0, 1). The cost table is filled one anti-diagonal at a time (every cell on it depends
    only on the two previous diagonals), so it is vectorised numpy without a JIT; ties prefer the diagonal step,
    which makes the path of two identical sequences the diagonal.
    """
    from scipy.spatial.distance import cdist

    n, m = len(ref), len(hyp)
    if n == 0 or m == 0:
        raise ValueError("cannot align an empty sequence")
    cost = cdist(ref, hyp)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for k in range(2, n + m + 1):
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        best = np.minimum(np.minimum(acc[i - 1, j - 1], acc[i - 1, j]), acc[i, j - 1])
        acc[i, j] = cost[i - 1, j - 1] + best
    path = [(n - 1, m - 1)]
    i, j = n, m
    while (i, j) != (1, 1):
        steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))  # diagonal first: wins ties
        i, j = min(steps, key=lambda ij: acc[ij])
        path.append((i - 1, j - 1))
    return np.array(path[::-1], dtype=np.int64)


@dataclass
class MCDResult:
    mcd: float  # dB, mean over the DTW path
    log_f0_rmse: float  # natural-log F0 RMSE over frames voiced in both (nan if none)
    vuv_error: float  # fraction of aligned frames whose voicing decisions differ
    frames: int  # length of the DTW path


def mcd_f0(
    ref: np.ndarray, hyp: np.ndarray, sample_rate: int, f0_method: Literal["dio", "harvest"] = "dio"
) -> MCDResult:
    """MCD-DTW, log-F0 RMSE and V/UV error of ``hyp`` against ``ref`` (same sample rate, mono float)."""
    r = world_features(ref, sample_rate, f0_method)
    h = world_features(hyp, sample_rate, f0_method)
    path = dtw_path(r.mcep[:, 1:], h.mcep[:, 1:])
    diff = r.mcep[path[:, 0], 1:] - h.mcep[path[:, 1], 1:]
    mcd = float(np.mean(_MCD_CONST * np.sqrt(np.sum(diff**2, axis=1))))
    f0_r, f0_h = r.f0[path[:, 0]], h.f0[path[:, 1]]
    voiced_r, voiced_h = f0_r > 0, f0_h > 0
    both = voiced_r & voiced_h
    log_f0_rmse = (
        float(np.sqrt(np.mean((np.log(f0_r[both]) - np.log(f0_h[both])) ** 2))) if both.any() else float("nan")
    )
    return MCDResult(mcd=mcd, log_f0_rmse=log_f0_rmse, vuv_error=float(np.mean(voiced_r != voiced_h)),
                     frames=len(path))
