"""Compatibility with checkpoints of other implementations (the released KALL-E weights)."""

from espnet_kalle.compat.official import ConversionError, convert_flow_vae, convert_lm, flow_vae_params, lm_params

__all__ = ["ConversionError", "convert_flow_vae", "convert_lm", "flow_vae_params", "lm_params"]
