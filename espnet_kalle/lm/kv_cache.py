"""A KV cache that grows in place, for frame-by-frame generation on CPU.

``transformers.DynamicCache`` appends each step's keys/values with ``torch.cat``, which reallocates and copies every
layer's whole cache per generated frame: measured on the mini LM (6 layers, ~220 cached positions) that copy was a
quarter of a CPU step. This cache keeps per-layer buffers with spare room (doubling when full) and returns views of
the filled part, so a step writes only its new position. Attention sees exactly the cached length (unlike
``StaticCache``, whose fixed length makes every step attend over the whole buffer).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """One layer's keys/values in a buffer with spare room; ``keys``/``values`` are views of its filled part."""

    min_capacity = 64

    def lazy_initialization(self, key_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states)
        self._key_buffer: Optional[torch.Tensor] = None
        self._value_buffer: Optional[torch.Tensor] = None

    def _owns_views(self) -> bool:
        # crop / batch selection elsewhere in transformers may replace keys with new tensors: then re-buffer them.
        buffer = self._key_buffer
        return buffer is not None and self.keys.numel() > 0 and self.keys.data_ptr() == buffer.data_ptr()

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, length: int) -> None:
        buffer = self._key_buffer
        fits = (
            self._owns_views()
            and buffer.shape[0] == key_states.shape[0]
            and buffer.shape[-2] >= length
        )
        if fits:
            return
        capacity = max(length, 2 * (buffer.shape[-2] if buffer is not None else 0), self.min_capacity)
        filled = self.get_seq_length()
        new_keys = key_states.new_empty(*key_states.shape[:-2], capacity, key_states.shape[-1])
        new_values = value_states.new_empty(*value_states.shape[:-2], capacity, value_states.shape[-1])
        if filled:
            new_keys[..., :filled, :] = self.keys
            new_values[..., :filled, :] = self.values
        self._key_buffer, self._value_buffer = new_keys, new_values
        self.keys, self.values = new_keys[..., :filled, :], new_values[..., :filled, :]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, cache_kwargs: Optional[dict[str, Any]] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        self._reserve(key_states, value_states, end)
        self._key_buffer[..., start:end, :] = key_states
        self._value_buffer[..., start:end, :] = value_states
        self.keys = self._key_buffer[..., :end, :]
        self.values = self._value_buffer[..., :end, :]
        return self.keys, self.values


class GrowingCache(DynamicCache):
    """A ``DynamicCache`` whose layers grow in place (see the module docstring); a drop-in for generation."""

    def __init__(self) -> None:
        Cache.__init__(self, layer_class_to_replicate=GrowingLayer)
