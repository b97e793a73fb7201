"""The LM backbone's one-frame generation step, exported to ONNX and run by onnxruntime (optionally int8).

Why: a small LM generating one frame at a time on CPU spends most of each step outside arithmetic, in per-op
dispatch in Python; the same step as one onnxruntime graph takes a fraction of the time, less still with
onnxruntime's dynamic int8 MatMuls (figures: benchmarks/RESULTS.md). The head and the sampling stay in PyTorch; the
backbone runs here.

The graph is traced from the backbone itself (``torch.onnx.export`` of transformers' LlamaModel with a
DynamicCache), so it is the same network with the same weights: float outputs match eager PyTorch to ~1e-6.
Batch 1 only, which is what streaming synthesis uses.

The prompt (every position before the first frame) runs in a second graph of the same network that takes many
positions at once with a causal mask (``prefill``). A voice that continues a prompt puts 100-150 positions before
each sentence, which this graph runs in far less time than eager PyTorch. The one-frame step keeps its own graph,
which is faster per frame than the many-position one. The graph also continues from keys and values it computed
before (``PrefixState``): a voice's speaker and prompt text open every sentence's prefix, so they are computed once
per voice and each sentence prefills only its own text and the prompt's frames.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache, LlamaModel

from espnet_kalle.onnx_graphs import cpu_session, export_graph

# Larger backbones (e.g. the paper's 1B LLaMA) exceed the 2 GB single-file ONNX limit and are not overhead-bound.
MAX_PARAMETERS = 100_000_000


class _Step(nn.Module):
    """forward(x [1, S, H], position [1, S], mask [1, 1, S, T + S], k_0, v_0, ... [1, heads, T, head_dim])
    -> (hidden [1, H] of the last position, present k_0, v_0, ... [1, heads, T + S, head_dim]).
    The mask is additive: zeros for one step, causal (-inf above the diagonal) for a prompt."""

    def __init__(self, backbone: LlamaModel):
        super().__init__()
        self.backbone = backbone
        self.layers = backbone.config.num_hidden_layers

    def forward(self, x, position, mask, *past):
        cache = DynamicCache()
        for layer in range(self.layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        # An explicit (all-zero, additive) 4-D mask: transformers' own mask builder does not trace.
        out = self.backbone(inputs_embeds=x, position_ids=position, attention_mask=mask, past_key_values=cache,
                            use_cache=True)
        present = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        return (out.last_hidden_state[:, -1], *present)


def can_export(backbone: nn.Module) -> bool:
    return isinstance(backbone, LlamaModel) and sum(p.numel() for p in backbone.parameters()) <= MAX_PARAMETERS


@dataclass(frozen=True)
class PrefixState:
    """Keys and values per layer of a prefix's first ``length`` positions, from ``OnnxDecodeStep.prefix_state``;
    ``prefill`` continues from them without changing them, so one state serves any number of sentences."""

    past: Tuple[np.ndarray, ...]
    length: int


class OnnxDecodeStep:
    """One generation step of a backbone in onnxruntime; ``prefill`` runs the prompt, ``start`` takes over a
    PyTorch prompt cache instead."""

    def __init__(self, model_bytes: bytes, threads: int = 1, prefill_bytes: Optional[bytes] = None,
                 prefill_threads: Optional[int] = None):
        # One frame at batch 1 is too small to split: a second thread costs more in hand-over than it saves. A
        # prompt of ~100 positions is not, so its graph uses torch's thread count unless told otherwise
        # (benchmarks/RESULTS.md).
        self.session = cpu_session(model_bytes, threads)
        self.model_bytes = model_bytes
        self.past_names = [node.name for node in self.session.get_inputs()[3:]]  # after x, position, mask
        self.prefill_session = None
        if prefill_bytes is not None:
            self.prefill_session = cpu_session(prefill_bytes, prefill_threads or torch.get_num_threads())
        shape = self.session.get_inputs()[3].shape  # [1, heads, past, head_dim]
        self._empty_past = np.zeros((1, int(shape[1]), 0, int(shape[3])), dtype=np.float32)

    @classmethod
    def from_backbone(cls, backbone: LlamaModel, int8: bool = False, threads: int = 1,
                      prefill: bool = True) -> OnnxDecodeStep:
        """Export ``backbone`` (left untouched); ``int8``: dynamic int8 MatMul weights (onnxruntime.quantization);
        ``prefill``: also export the many-position graph that runs prompts (``prefill``)."""
        step_bytes = _export(backbone, new_positions=1)
        prefill_bytes = _export(backbone, new_positions=None) if prefill else None
        if int8:
            step_bytes = _quantize_int8(step_bytes)
            prefill_bytes = _quantize_int8(prefill_bytes) if prefill_bytes is not None else None
        return cls(step_bytes, threads, prefill_bytes)

    @property
    def can_prefill(self) -> bool:
        return self.prefill_session is not None

    def prefill(self, inputs: torch.Tensor, start: Optional[PrefixState] = None
                ) -> Tuple[torch.Tensor, List[np.ndarray]]:
        """Hidden state [1, H] after the prompt embeddings ``inputs`` [1, S, H], and the step's state (keys and
        values per layer) for the frames that follow. The inputs sit at positions 0..S-1, or right after ``start``
        (positions start.length..start.length+S-1, attending to it as well)."""
        if self.prefill_session is None:
            raise RuntimeError("this step was exported without its prefill graph (prefill=False)")
        if inputs.dim() != 3 or inputs.shape[0] != 1 or inputs.shape[1] == 0:
            raise ValueError(f"prefill takes one non-empty prompt [1, S, H], got {tuple(inputs.shape)}")
        length = inputs.shape[1]
        offset = 0 if start is None else start.length
        mask = np.zeros((length, offset + length), dtype=np.float32)
        mask[:, offset:] = np.triu(np.full((length, length), np.finfo(np.float32).min, dtype=np.float32), 1)
        past = [self._empty_past] * len(self.past_names) if start is None else start.past
        feed = {
            "x": inputs.detach().float().contiguous().numpy(),
            "position": np.arange(offset, offset + length, dtype=np.int64)[None],
            "mask": mask[None, None],
            **dict(zip(self.past_names, past)),
        }
        hidden, *present = self.prefill_session.run(None, feed)
        return torch.from_numpy(hidden), present

    def prefix_state(self, inputs: torch.Tensor) -> PrefixState:
        """The keys and values of ``inputs`` [1, S, H] at positions 0..S-1, for later ``prefill(..., start=)``."""
        _, present = self.prefill(inputs)
        return PrefixState(tuple(present), int(inputs.shape[1]))

    def start(self, cache: DynamicCache) -> List[np.ndarray]:
        """The step's state (keys and values per layer) from a PyTorch cache of the prompt (batch 1)."""
        if cache.layers[0].keys.shape[0] != 1:
            raise ValueError("OnnxDecodeStep runs batch 1 only")
        return [t.detach().float().contiguous().numpy() for layer in cache.layers for t in (layer.keys, layer.values)]

    def __call__(self, x: torch.Tensor, position: int, past: List[np.ndarray]) -> torch.Tensor:
        """Hidden state [1, H] after input embedding ``x`` [1, 1, H] at ``position``; extends ``past`` in place."""
        total = past[0].shape[2] + 1
        feed = {
            "x": x.detach().float().contiguous().numpy(),
            "position": np.array([[position]], dtype=np.int64),
            "mask": np.zeros((1, 1, 1, total), dtype=np.float32),
            **dict(zip(self.past_names, past)),
        }
        hidden, *present = self.session.run(None, feed)
        past[:] = present
        return torch.from_numpy(hidden)


def _export(backbone: LlamaModel, new_positions: Optional[int]) -> bytes:
    """The backbone as an ONNX graph of ``_Step``: one new position (the step) or, with ``new_positions=None``,
    any number of them (a dynamic axis; traced with two so that nothing specialises on one)."""
    config = backbone.config
    layers, heads = config.num_hidden_layers, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    past = 3  # any length: the cache length is a dynamic axis
    new = new_positions or 2
    example = (
        torch.zeros(1, new, config.hidden_size),
        torch.arange(past, past + new)[None],
        torch.zeros(1, 1, new, past + new),
        *(torch.zeros(1, heads, past, head_dim) for _ in range(2 * layers)),
    )
    past_names, present_names = _cache_names("past", layers), _cache_names("present", layers)
    dynamic_axes = {"mask": {3: "total"}, **{n: {2: "past"} for n in past_names}}
    if new_positions is None:
        dynamic_axes.update({"x": {1: "new"}, "position": {1: "new"}, "mask": {2: "new", 3: "total"}})
    return export_graph(_Step(backbone).eval(), example, ["x", "position", "mask", *past_names],
                        ["hidden", *present_names], dynamic_axes)


def _cache_names(prefix: str, layers: int) -> List[str]:
    return [f"{prefix}_{kv}{i}" for i in range(layers) for kv in ("k", "v")]


def _quantize_int8(model_bytes: bytes) -> bytes:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def not_preprocessing_advice(record: logging.LogRecord) -> bool:  # advice for static quantisation only
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_preprocessing_advice)
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = Path(tmp) / "int8.onnx"
            quantize_dynamic(onnx.load_from_string(model_bytes), out, weight_type=QuantType.QInt8)
            return out.read_bytes()
    finally:
        root.removeFilter(not_preprocessing_advice)
