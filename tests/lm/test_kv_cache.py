"""GrowingCache: the same attention results as transformers' DynamicCache while writing in place."""

import torch
from transformers import DynamicCache

from espnet_kalle.lm.kv_cache import GrowingCache, GrowingLayer


def _run(backbone, cache, prefix, steps):
    with torch.inference_mode():
        n = prefix.shape[1]
        positions = torch.arange(n).expand(prefix.shape[0], n)
        outs = [backbone(inputs_embeds=prefix, position_ids=positions, past_key_values=cache,
                         use_cache=True).last_hidden_state[:, -1]]
        for i, step in enumerate(steps):
            position = torch.full((prefix.shape[0], 1), n + i)
            outs.append(backbone(inputs_embeds=step, position_ids=position, past_key_values=cache,
                                 use_cache=True).last_hidden_state[:, -1])
    return torch.stack(outs, 1)


def test_matches_dynamic_cache_across_growth(tiny_lm):
    backbone = tiny_lm().backbone
    torch.manual_seed(0)
    prefix = torch.randn(2, 10, 32)
    steps = torch.randn(150, 2, 1, 32)  # 160 positions: past the first buffer (64) and its doubling (128)
    grown = GrowingCache()
    expected = _run(backbone, DynamicCache(), prefix, steps)
    actual = _run(backbone, grown, prefix, steps)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    layer = grown.layers[0]
    assert isinstance(layer, GrowingLayer) and grown.get_seq_length() == 160
    assert layer._key_buffer.shape[-2] == 256  # grew by doubling, not per step
    assert layer.keys.data_ptr() == layer._key_buffer.data_ptr()  # keys are a view: no copy per step


def test_cropped_cache_keeps_working(tiny_lm):
    """transformers may replace a layer's tensors (crop, batch selection); the cache re-buffers them."""
    backbone = tiny_lm().backbone
    torch.manual_seed(1)
    prefix, steps = torch.randn(1, 6, 32), torch.randn(5, 1, 1, 32)
    grown, dynamic = GrowingCache(), DynamicCache()
    _run(backbone, grown, prefix, steps)
    _run(backbone, dynamic, prefix, steps)
    grown.crop(8)
    dynamic.crop(8)
    more = torch.randn(3, 1, 1, 32)
    with torch.inference_mode():
        for i, step in enumerate(more):
            position = torch.tensor([[8 + i]])
            a = backbone(inputs_embeds=step, position_ids=position, past_key_values=grown, use_cache=True)
            b = backbone(inputs_embeds=step, position_ids=position, past_key_values=dynamic, use_cache=True)
            torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-5, rtol=0)
    assert grown.get_seq_length() == 11
