"""Load a trained "kalle" model (ESPnet ``config.yaml`` + model ``.pth``) without ESPnet's task machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import torch
import yaml

from espnet_kalle.checkpoint import load_strict, load_weights
from espnet_kalle.tts.kalle import KallE


def read_train_config(config_path: str | Path) -> Dict[str, Any]:
    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"kalle config not found: {config_path}")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{config_path} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict) or config.get("tts") != "kalle":
        raise ValueError(f"{config_path} is not the config of a 'kalle' TTS model")
    token_list = config.get("token_list")
    if isinstance(token_list, str):  # a path, as given on the command line before ESPnet expands it
        path = Path(token_list)
        if not path.is_absolute():
            path = config_path.parent / path
        config["token_list"] = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    if config.get("token_type") == "hf":  # a Hugging Face tokenizer: the LM config gives the vocabulary size
        if not isinstance(config.get("vocab_size"), int) or config["vocab_size"] <= 0:
            raise ValueError(f"{config_path} uses a Hugging Face tokenizer but has no positive vocab_size")
        return config
    if not config.get("token_list"):
        raise ValueError(f"{config_path} has no token_list")
    return config


def vocab_size(config: Dict[str, Any]) -> int:
    """Text vocabulary size of the LM: the token list, or ``vocab_size`` with a Hugging Face tokenizer."""
    return int(config["vocab_size"]) if config.get("token_type") == "hf" else len(config["token_list"])


def load_kalle(config_path: str | Path, model_path: str | Path, device: str | torch.device = "cpu"
               ) -> Tuple[KallE, Dict[str, Any]]:
    """(model in eval mode, train config). Every parameter must be in the checkpoint (ESPnet's loader is lax)."""
    config = read_train_config(config_path)
    model = KallE(idim=vocab_size(config), odim=int(config["odim"]), **(config.get("tts_conf") or {}))
    state = load_weights(model_path, "kalle model file")
    if isinstance(state, dict) and any(k.startswith("tts.") for k in state):
        state = {k[len("tts."):]: v for k, v in state.items() if k.startswith("tts.")}
    load_strict(model, state, str(model_path), str(config_path))
    return model.to(device).eval(), config
