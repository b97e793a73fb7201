"""Int8 dynamic quantisation of the LM backbone for CPU inference.

Per-frame generation of a small LM on CPU is bound by reading the Linear weights; storing them as int8 (activations
stay float, scales computed per call) cuts that ~4x. Only the Transformer's Linear layers are quantised: the input
projections and the distribution head stay float, so the predicted (mu, sigma) keep full precision.
The synthesizer uses this PyTorch copy only where its onnxruntime step (``onnx_step.py``) does not apply: backbones
too large to export, or ``onnx_steps = False``.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from espnet_kalle.lm.model import KalleLM


def quantize_lm(lm: KalleLM) -> KalleLM:
    """An inference-only copy of ``lm`` whose backbone Linear layers are int8 (the original is untouched)."""
    fast = copy.deepcopy(lm).eval()
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao; it still ships (and works) in the pinned torch.
        warnings.simplefilter("ignore")
        fast.backbone = torch.ao.quantization.quantize_dynamic(fast.backbone, {nn.Linear}, dtype=torch.qint8)
    return fast
