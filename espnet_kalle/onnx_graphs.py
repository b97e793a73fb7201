"""Export a PyTorch module to an in-memory ONNX graph and run it in onnxruntime on the CPU.

Shared by the LM's generation step (``lm.onnx_step``) and the Flow-VAE decoder (``codec.onnx_decoder``): small
networks called many times per sentence, where eager PyTorch's per-op overhead dominates.
"""

from __future__ import annotations

import io
import warnings
from typing import Dict, Sequence

import torch
from torch import nn


def export_graph(module: nn.Module, example: Sequence[torch.Tensor], input_names: Sequence[str],
                 output_names: Sequence[str], dynamic_axes: Dict[str, Dict[int, str]]) -> bytes:
    """``module`` traced on ``example`` (TorchScript-based exporter, opset 17) as serialised ONNX."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation notes about the TorchScript-based exporter
        torch.onnx.export(
            module, tuple(example), buffer, input_names=list(input_names), output_names=list(output_names),
            dynamic_axes=dynamic_axes, dynamo=False, opset_version=17,
        )
    return buffer.getvalue()


def cpu_session(model_bytes: bytes, threads: int):
    """An onnxruntime CPU session of a serialised graph on ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if threads > 1:  # idle pool threads would spin after each run, taking the cores the next step needs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
