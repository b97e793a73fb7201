"""The istft decoder in onnxruntime: the same audio as PyTorch's offline and streaming decoding, chunk by chunk."""

import pytest
import torch

from espnet_kalle.codec import FlowVAE
from espnet_kalle.codec.decoders import BigVGANDecoder, ISTFTDecoder
from espnet_kalle.codec.onnx_decoder import OnnxDecoder, can_export_decoder

from model_factory import CODEC_PARAMS  # tests/model_factory.py (on the path via conftest)


def tiny_codec() -> FlowVAE:
    torch.manual_seed(0)
    model = FlowVAE(**CODEC_PARAMS).prepare_for_inference()
    for block in model.decoder.blocks:  # layer scale starts at 1e-6: give the blocks a visible effect
        torch.nn.init.normal_(block.gamma, std=0.5)
    return model


@pytest.mark.parametrize("chunking", [[1] * 7, [1, 2, 4], [7], [3, 0, 4]])
def test_onnx_stream_matches_offline_and_pytorch_stream(chunking):
    model = tiny_codec()
    onnx = OnnxDecoder(model.decoder, model.latent_dim)
    z = torch.randn(1, model.latent_dim, sum(chunking))
    with torch.inference_mode():
        offline = model.decode(z)
    stream, reference = onnx.stream(), model.stream_decoder()
    assert stream.hop_length == reference.hop_length and stream.lookahead_frames == 0
    ours, theirs, start = [], [], 0
    for n in chunking:
        chunk = z[..., start : start + n]
        start += n
        out = stream.push(chunk)
        assert out.shape == (1, 1, n * model.hop_length)  # audio for every frame pushed, at once
        ours.append(out)
        theirs.append(reference.push(chunk))
    ours.append(stream.flush())
    theirs.append(reference.flush())
    torch.testing.assert_close(torch.cat(ours, -1), torch.cat(theirs, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(ours, -1), offline, atol=1e-5, rtol=1e-5)


def test_streams_are_independent_and_bad_use_is_refused():
    model = tiny_codec()
    onnx = OnnxDecoder(model.decoder, model.latent_dim)
    z = torch.randn(1, model.latent_dim, 4)
    first, second = onnx.stream(), onnx.stream()
    a = torch.cat([first.push(z[..., :2]), second.push(z[..., 2:]), first.push(z[..., 2:])], -1)
    with torch.inference_mode():
        torch.testing.assert_close(a[..., : 2 * model.hop_length], model.decode(z[..., :2]), atol=1e-5, rtol=1e-5)
        # the first stream continued from its own context, not from the second stream's
        torch.testing.assert_close(torch.cat([a[..., : 2 * model.hop_length], a[..., 4 * model.hop_length :]], -1),
                                   model.decode(z), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="latents"):
        first.push(torch.randn(2, model.latent_dim, 1))
    first.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        first.push(z)


def test_only_the_istft_head_without_lookahead_is_exported():
    assert can_export_decoder(tiny_codec().decoder)
    assert not can_export_decoder(ISTFTDecoder(8, hop_length=64, dim=16, intermediate_dim=32, num_layers=1,
                                               lookahead_frames=1))
    bigvgan = BigVGANDecoder(8, upsample_rates=(2,), upsample_kernel_sizes=(4,), upsample_initial_channel=8,
                             resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1,),))
    assert not can_export_decoder(bigvgan)
    with pytest.raises(ValueError, match="istft"):
        OnnxDecoder(bigvgan, 8)
