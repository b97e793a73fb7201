"""Sanity check of a converted encoder on real weights: the release's own prompt latents.

The release ships ``prompt_dir/<name>.wav`` with ``<name>.npy`` ([1, latent_dim, frames]), latents its real
Flow-VAE made from that wav. Encoding the wav with the converted encoder must give the same number of frames,
and the ``.npy`` must look like a draw from (or the mean of) our posterior N(mu, sigma):

- ``corr``: correlation of the ``.npy`` with our mu over all frames and channels (near 1 when the encoder matches
  and the posterior is narrow; a wrong activation lowers it, ``tests/compat/test_official.py``);
- ``z_mean`` / ``z_std``: mean and std of ``(npy - mu) / sigma``: about 0 / 1 if the ``.npy`` are posterior
  samples, about 0 / 0 if they are means; a std far above 1 means they are not from our posterior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import torch


def compare_prompt_latents(codec: torch.nn.Module, wav: np.ndarray, released: np.ndarray) -> Dict[str, float]:
    """``codec``: a converted ``FlowVAE``; ``wav``: the prompt at its sample rate; ``released``: the ``.npy``."""
    released = np.asarray(released, dtype=np.float64).reshape(-1, np.shape(released)[-1])  # [D, F]
    with torch.inference_mode():
        mu, log_sigma = codec.encode(torch.as_tensor(wav, dtype=torch.float32).view(1, 1, -1))
    mu, sigma = mu[0].double().numpy(), log_sigma[0].exp().double().numpy()
    result = {"frames": float(mu.shape[-1]), "release_frames": float(released.shape[-1])}
    if mu.shape != released.shape:
        return result
    z = (released - mu) / sigma
    result.update(corr=float(np.corrcoef(released.ravel(), mu.ravel())[0, 1]), z_mean=float(z.mean()),
                  z_std=float(z.std()))
    return result


def check_prompt_dir(codec: torch.nn.Module, prompt_dir: Path) -> List[Dict[str, object]]:
    """``compare_prompt_latents`` for every ``<name>.npy`` with a ``<name>.wav`` beside it."""
    from espnet_kalle.audio import load_audio

    rows: List[Dict[str, object]] = []
    for npy in sorted(Path(prompt_dir).glob("*.npy")):
        wav_path = npy.with_suffix(".wav")
        if not wav_path.exists():
            continue
        wav = load_audio(wav_path, codec.sample_rate)
        rows.append({"prompt": npy.stem, **compare_prompt_latents(codec, wav, np.load(npy))})
    if not rows:
        raise FileNotFoundError(f"{prompt_dir}: no <name>.npy with a <name>.wav beside it")
    return rows
