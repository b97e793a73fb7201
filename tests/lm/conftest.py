from pathlib import Path

import numpy as np
import pytest
import torch

from espnet_kalle.lm.model import KalleLM

DATA = Path(__file__).resolve().parents[1] / "data"


def _tiny_lm(latent_dim=8, speaker_dim=0, vocab_size=20, hidden=32, layers=2, seed=0):
    torch.manual_seed(seed)
    return KalleLM(
        vocab_size=vocab_size, latent_dim=latent_dim, hidden_size=hidden, num_layers=layers, num_heads=4,
        intermediate_size=2 * hidden, speaker_dim=speaker_dim, max_position_embeddings=512,
    ).eval()


@pytest.fixture
def release_latents():
    """Two real latent sequences of the released Flow-VAE ([frames, 512]) of two human prompt
    recordings (70 and 159, not in the repository)."""
    data = np.load(DATA / "release_latents.npz")
    return [torch.from_numpy(data[k].astype(np.float32)) for k in ("70", "159")]


@pytest.fixture
def tiny_lm():
    """Factory for a 2-layer LLaMA KalleLM (random init, eval mode)."""
    return _tiny_lm
