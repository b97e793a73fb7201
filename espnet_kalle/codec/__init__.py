"""Flow-VAE codec (no ESPnet imports here; see ``espnet_model.py`` for the ESPnet wrapper)."""

from espnet_kalle.codec.flow_vae import FlowVAE

__all__ = ["FlowVAE"]
