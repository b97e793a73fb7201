"""The causal Transformer: a ``transformers`` LLaMA fed with embeddings we assemble ourselves."""

from __future__ import annotations

from typing import Any, Dict, Optional

from transformers import LlamaConfig, LlamaModel


def build_llama(
    vocab_size: int,
    hidden_size: int = 512,
    num_layers: int = 8,
    num_heads: int = 8,
    num_kv_heads: Optional[int] = None,
    intermediate_size: Optional[int] = None,
    max_position_embeddings: int = 4096,
    rope_theta: float = 10000.0,
    rope_scaling: Optional[Dict[str, Any]] = None,
    rms_norm_eps: float = 1e-5,
    head_dim: Optional[int] = None,
    attn_implementation: str = "sdpa",
) -> LlamaModel:
    """A LlamaModel of the given size (2-layer test model up to the paper's Llama-3.2-1B shape)."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        head_dim=head_dim or hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        rms_norm_eps=rms_norm_eps,
        tie_word_embeddings=False,
        attn_implementation=attn_implementation,
    )
    return LlamaModel(config)
