"""Statistics of Flow-VAE posterior latents (the npy files written by kalle-extract-latents).

Each file is ``[F, 2D]`` = ``mu | log_sigma``. The paper's Flow-VAE figure shows histograms of the posterior mean
and variance: a well-regularised latent space has mu spread like N(0, 1) and variances that neither collapse to
0 (a deterministic AE) nor sit at 1 (posterior collapse: the KL term won). The per-dimension KL to N(0, I) tells
how many dimensions carry information.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from espnet_kalle.kaldi_io import read_kaldi_map


@dataclass
class LatentStats:
    files: int
    frames: int
    dim: int
    mu: np.ndarray  # [N] a sample of posterior means (all dims pooled)
    var: np.ndarray  # [N] the matching posterior variances exp(2 log_sigma)
    kl_per_dim: np.ndarray  # [D] mean KL(q || N(0, 1)) per dimension, nats per frame

    def summary(self) -> dict:
        return {
            "files": self.files, "frames": self.frames, "dim": self.dim,
            "mu_mean": float(self.mu.mean()), "mu_std": float(self.mu.std()),
            "var_mean": float(self.var.mean()), "var_median": float(np.median(self.var)),
            "kl_per_frame": float(self.kl_per_dim.sum()),
            "active_dims": int((self.kl_per_dim > 0.01).sum()),
        }


def load_latent_stats(feats_scp: Union[str, Path], max_values: int = 500_000,
                      max_files: Optional[int] = None) -> LatentStats:
    """Pool ``mu`` and ``var`` over the files of a ``feats.scp`` (subsampled to ``max_values`` for plotting)."""
    entries = list(read_kaldi_map(feats_scp).items())
    base = Path(feats_scp).parent
    if max_files is not None:
        entries = entries[:max_files]
    mus, log_sigmas = [], []
    for _, path in entries:
        p = Path(path)
        arr = np.load(p if p.exists() else base / p).astype(np.float64)
        if arr.ndim != 2 or arr.shape[1] % 2:
            raise ValueError(f"{path}: expected [F, 2D] mu|log_sigma latents, got shape {arr.shape}")
        d = arr.shape[1] // 2
        mus.append(arr[:, :d])
        log_sigmas.append(arr[:, d:])
    if not mus:
        raise ValueError(f"{feats_scp}: no latents listed")
    mu, ls = np.concatenate(mus), np.concatenate(log_sigmas)
    var = np.exp(2.0 * ls)
    kl = 0.5 * (mu**2 + var - 1.0 - 2.0 * ls)
    flat_mu, flat_var = mu.ravel(), var.ravel()
    if flat_mu.size > max_values:
        idx = np.random.default_rng(0).choice(flat_mu.size, max_values, replace=False)
        flat_mu, flat_var = flat_mu[idx], flat_var[idx]
    return LatentStats(files=len(mus), frames=mu.shape[0], dim=mu.shape[1], mu=flat_mu, var=flat_var,
                       kl_per_dim=kl.mean(axis=0))
