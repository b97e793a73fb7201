"""The backbone's generation step in onnxruntime: same network as PyTorch (float), int8 close to it, and
generation through it follows the PyTorch path."""

import onnx
import pytest
import torch
from transformers import DynamicCache

from espnet_kalle.lm.generate import GenerationConfig, generate, seeded_generators
from espnet_kalle.lm.onnx_step import OnnxDecodeStep, PrefixState, can_export

TEXT = torch.tensor([1, 2, 3, 4, 5, 6])


def prompt_cache(model, prefix):
    cache = DynamicCache()
    with torch.inference_mode():
        model.backbone(inputs_embeds=prefix[None], past_key_values=cache, use_cache=True)
    return cache


def torch_steps(model, prefix, inputs):
    cache = prompt_cache(model, prefix)
    out = []
    with torch.inference_mode():
        for i, x in enumerate(inputs):
            position = torch.tensor([[prefix.shape[0] + i]])
            h = model.backbone(inputs_embeds=x, position_ids=position, past_key_values=cache, use_cache=True)
            out.append(h.last_hidden_state[:, -1])
    return out


def onnx_steps(step, model, prefix, inputs):
    past = step.start(prompt_cache(model, prefix))
    return [step(x, prefix.shape[0] + i, past) for i, x in enumerate(inputs)]


@pytest.fixture
def model_and_prefix(tiny_lm):
    model = tiny_lm(speaker_dim=4)
    with torch.inference_mode():
        prefix = model.prefix(TEXT, torch.randn(4))
    return model, prefix


def test_float_step_matches_pytorch_over_a_growing_cache(model_and_prefix):
    model, prefix = model_and_prefix
    inputs = [torch.randn(1, 1, model.backbone.config.hidden_size) for _ in range(12)]
    step = OnnxDecodeStep.from_backbone(model.backbone)
    for ours, reference in zip(onnx_steps(step, model, prefix, inputs), torch_steps(model, prefix, inputs)):
        assert ours.shape == reference.shape == (1, model.backbone.config.hidden_size)
        torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_int8_step_quantises_the_matmuls_and_stays_close(model_and_prefix):
    model, prefix = model_and_prefix
    inputs = [torch.randn(1, 1, model.backbone.config.hidden_size) for _ in range(6)]
    step = OnnxDecodeStep.from_backbone(model.backbone, int8=True)
    ops = {node.op_type for node in onnx.load_from_string(step.model_bytes).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}
    ours = torch.cat(onnx_steps(step, model, prefix, inputs))
    reference = torch.cat(torch_steps(model, prefix, inputs))
    assert not torch.equal(ours, reference)
    assert torch.nn.functional.cosine_similarity(ours, reference, dim=-1).min() > 0.98


def test_generation_through_the_onnx_step_follows_pytorch(model_and_prefix):
    model, prefix = model_and_prefix
    config = GenerationConfig(min_frames=20, max_frames=20)
    step = OnnxDecodeStep.from_backbone(model.backbone)
    ours = generate(model, [prefix], [TEXT.numel()], config, seeded_generators([7]), decode_step=step)[0]
    reference = generate(model, [prefix], [TEXT.numel()], config, seeded_generators([7]))[0]
    assert ours.shape == reference.shape == (20, model.latent_dim)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    # Batches and guidance are PyTorch's: the step is ignored, not misused.
    two = generate(model, [prefix, prefix], [6, 6], config, seeded_generators([7, 7]), decode_step=step)
    torch.testing.assert_close(two[0], reference, atol=1e-5, rtol=1e-5)


def test_only_small_llama_backbones_are_exported(tiny_lm):
    assert can_export(tiny_lm().backbone)
    assert not can_export(torch.nn.Linear(4, 4))


def test_prefill_graph_runs_the_prompt_like_pytorch(model_and_prefix):
    model, prefix = model_and_prefix
    step = OnnxDecodeStep.from_backbone(model.backbone)
    hidden, past = step.prefill(prefix[None])
    cache = prompt_cache(model, prefix)
    with torch.inference_mode():
        reference = model.backbone(inputs_embeds=prefix[None]).last_hidden_state[:, -1]
    torch.testing.assert_close(hidden, reference, atol=1e-4, rtol=1e-4)
    for ours, theirs in zip(past, step.start(cache)):  # the same keys and values for every layer and position
        assert ours.shape == theirs.shape == (1, model.backbone.config.num_key_value_heads, prefix.shape[0],
                                               theirs.shape[3])
        torch.testing.assert_close(torch.from_numpy(ours), torch.from_numpy(theirs), atol=1e-4, rtol=1e-4)
    # the frames after it continue from that state as from PyTorch's
    inputs = [torch.randn(1, 1, model.backbone.config.hidden_size) for _ in range(4)]
    ours = [step(x, prefix.shape[0] + i, past) for i, x in enumerate(inputs)]
    for a, b in zip(ours, torch_steps(model, prefix, inputs)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_prefill_continues_from_a_computed_start_as_from_the_whole_prefix(model_and_prefix):
    """A voice's start ([speaker][prompt text]) is computed once; each sentence prefills only what follows it."""
    model, prefix = model_and_prefix
    step = OnnxDecodeStep.from_backbone(model.backbone)
    start = step.prefix_state(prefix[None, :3])
    assert isinstance(start, PrefixState) and start.length == 3
    kept = [k.copy() for k in start.past]
    whole_hidden, whole_past = step.prefill(prefix[None])
    for _ in range(2):  # the start is reused as it is: prefill never changes it
        hidden, past = step.prefill(prefix[None, 3:], start)
        torch.testing.assert_close(hidden, whole_hidden, atol=1e-5, rtol=1e-5)
        for ours, theirs in zip(past, whole_past):
            assert ours.shape == theirs.shape
            torch.testing.assert_close(torch.from_numpy(ours), torch.from_numpy(theirs), atol=1e-5, rtol=1e-5)
    for before, after in zip(kept, start.past):
        assert (before == after).all()
    # generation from the start gives the frames of generation from the whole prefix, and knows the room left
    config = GenerationConfig(min_frames=6, max_frames=6)
    reference = generate(model, [prefix], [TEXT.numel()], config, seeded_generators([5]), decode_step=step)[0]
    ours = generate(model, [prefix[3:]], [TEXT.numel()], config, seeded_generators([5]), decode_step=step,
                    start=start)[0]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="precomputed start"):
        generate(model, [prefix[3:]], [TEXT.numel()], config, decode_step=None, start=start)
    crowded = PrefixState(start.past, model.max_positions - prefix.shape[0] + 3)
    with pytest.raises(ValueError, match=f"{model.max_positions}"):
        generate(model, [prefix[3:]], [TEXT.numel()], config, decode_step=step, start=crowded)


def test_generation_without_the_prefill_graph_takes_over_pytorch_prompt(model_and_prefix, monkeypatch):
    model, prefix = model_and_prefix
    config = GenerationConfig(min_frames=8, max_frames=8)
    step = OnnxDecodeStep.from_backbone(model.backbone, prefill=False)
    assert not step.can_prefill
    with pytest.raises(RuntimeError, match="prefill"):
        step.prefill(prefix[None])
    steps = []
    call = OnnxDecodeStep.__call__
    monkeypatch.setattr(OnnxDecodeStep, "__call__", lambda self, *a: steps.append(a[1]) or call(self, *a))
    ours = generate(model, [prefix], [TEXT.numel()], config, seeded_generators([3]), decode_step=step)[0]
    assert steps == list(range(prefix.shape[0], prefix.shape[0] + 8))  # every frame after the prompt ran in onnx
    monkeypatch.undo()
    reference = generate(model, [prefix], [TEXT.numel()], config, seeded_generators([3]))[0]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
