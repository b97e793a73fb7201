"""Load the Flow-VAE generator of a trained ESPnet codec experiment, without importing ESPnet.

An ESPnet GAN-codec experiment dir holds ``config.yaml`` (``codec: flow_vae`` + ``codec_conf``) and model
files (``valid.*.best.pth``, ``N epoch.pth``, ``latest.pth``) whose keys read ``codec.generator.*``. ESPnet
itself loads with ``strict=False``; here every generator tensor must be present and nothing unknown may be
left over, so a config/checkpoint mismatch fails loudly instead of decoding noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from espnet_kalle.checkpoint import load_state_dict, load_strict
from espnet_kalle.codec.flow_vae import FlowVAE

CODEC_NAME = "flow_vae"
_PREFIXES = ("codec.generator.", "generator.")


def generator_kwargs(codec_conf: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """FlowVAE kwargs from a ``codec_conf``: ``generator_params`` with ``sampling_rate`` as ``sample_rate``.

    Shared by ``FlowVAECodec`` and ``load_flow_vae`` so training and loading build the same network.
    """
    codec_conf = dict(codec_conf or {})
    params = dict(codec_conf.get("generator_params") or {})
    fs = codec_conf.get("sampling_rate")
    if fs is not None:
        if "sample_rate" in params and int(params["sample_rate"]) != int(fs):
            raise ValueError(
                f"codec_conf.sampling_rate={fs} disagrees with generator_params.sample_rate={params['sample_rate']}"
            )
        params["sample_rate"] = int(fs)
    return params


def _read_config(config_path: Path) -> Dict[str, Any]:
    import yaml

    if not config_path.is_file():
        raise FileNotFoundError(f"codec config not found: {config_path}")
    try:
        with config_path.open(encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ValueError(f"codec config {config_path} is not valid YAML: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"codec config {config_path} must be a YAML mapping, got {type(config).__name__}")
    codec = config.get("codec", CODEC_NAME)
    if codec != CODEC_NAME:
        raise ValueError(f"{config_path} configures codec {codec!r}, not {CODEC_NAME!r}")
    return config


def _generator_state(state: Mapping[str, Any], model_path: Path) -> Dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            return sub
    sample = ", ".join(list(state)[:5])
    raise ValueError(f"{model_path} has no Flow-VAE generator weights (keys {_PREFIXES}); first keys: {sample}")


def load_flow_vae(
    config_path: Union[str, Path], model_path: Union[str, Path], device: Union[str, torch.device] = "cpu"
) -> FlowVAE:
    """Build the FlowVAE described by an ESPnet codec ``config.yaml`` and load its weights (eval mode)."""
    config_path, model_path = Path(config_path), Path(model_path)
    config = _read_config(config_path)
    model = FlowVAE(**generator_kwargs(config.get("codec_conf")))
    state = _generator_state(load_state_dict(model_path, "codec model file"), model_path)
    load_strict(model, state, str(model_path), f"the Flow-VAE of {config_path}")
    return model.to(device).eval()
