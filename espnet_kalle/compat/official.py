"""Map the released KALL-E checkpoints onto our Flow-VAE and KalleLM (numerics unchanged, names changed).

Release layout (every tensor name and shape: ``tests/data/official_kalle/*_state_dict.tsv``):

- ``flowvae.pt`` = ``{"generator": state_dict}``: ``audio_encoder.generator.*``, ``flow.flows.{0,2,..}.*``,
  ``conv_pre``, ``ups.*``, ``resblocks.*``, ``activation_post``, ``conv_post``; weight norm as ``weight_g`` /
  ``weight_v`` (old ``torch.nn.utils.weight_norm``), anti-aliasing ``upsample.filter`` /
  ``downsample.lowpass.filter`` buffers, SnakeBeta ``alpha`` / ``beta``.
- ``model.pt`` = plain state dict (float16 LLaMA): ``base_model.model.*`` (a transformers LlamaModel),
  ``base_model.lm_head.weight`` (tied to the embeddings, unused for speech), ``audio_linear``,
  ``distribution_linear``.

Our names differ only by structure: weight norm is a parametrization
(``<conv>.parametrizations.weight.original0/original1`` = g / v), our conv wrappers add a ``conv`` level,
encoder residual units a ``block`` level, and the parts sit under ``encoder.`` / ``flow.`` / ``decoder.``.
The mapping is derived by canonicalising every name of our model (``release_name``) and matching it against the
checkpoint, so it covers any configuration, not one hand-written table.

What the released code fixes and its JSON config does not name (read from ``flowvae.py`` and ``model.py`` of
github.com/xkx-hub/KALL-E; ``tests/compat/test_official.py`` checks our import against that code's outputs):

- Encoder (``Encoder``, ``Conv1d_S``, ``ResStack``): every conv zero-padded by ``dilation * (k - 1) // 2`` on
  both sides (not causal), first conv 1 -> 12 channels, 6 residual units per stage with dilations ``2 ** i``,
  LeakyReLU 0.2 between stages and torch's default 0.01 inside the units.
- Flow (``ResidualCouplingBlock``): 4 mean-only couplings of 4 WaveNet layers, kernel 5, dilation rate 1, causal
  (left) padding; used in training only (the decoder reads posterior samples z, not z_p).
- Decoder: ``conv_pre`` (kernel 7) is centred ("I add delay in the first conv"): 3 frames of lookahead. The
  anti-aliased activations are alias-free-torch's ``Activation1d``: centred filters with replicate padding, a
  few samples of lookahead each (``BigVGANDecoder.lookahead_samples`` adds them up). Causal transposed convs keep
  the first ``T * stride`` samples; AMP block convs are causal.
- Prompts: ``infer.py`` drops the last encoded frame of a prompt (``prompt_drop_last=1``).
- LM: ``head_dim`` (64 for Llama-3.2-1B) separates heads from head size, which shapes alone cannot; rope theta
  500000 with llama3 scaling (factor 32, low/high freq factors 1/4, original context 8192) and
  ``max_position_embeddings`` 131072 are ``model.py``'s ``default_llama_config``.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from espnet_kalle.errors import ModelInvalid

logger = logging.getLogger(__name__)

# <|SPEECH_UNDERSTANDING_END|>, <|SPEECH_GENERATION_START|> of the released Llama-3 tokenizer.
RELEASE_SEP_TOKENS = ("<|SPEECH_UNDERSTANDING_END|>", "<|SPEECH_GENERATION_START|>")
RELEASE_SEP_IDS = (128263, 128260)
LLAMA3_ROPE_SCALING = {
    "rope_type": "llama3",
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
LLAMA32_1B = dict(head_dim=64, rope_theta=500000.0, rope_scaling=LLAMA3_ROPE_SCALING,
                  max_position_embeddings=131072)
# The released inference: stop when KL(p || N(1, e)) / D < 0.5 after > 3 frames, <= 1000.
RELEASE_GENERATION = dict(temperature=1.0, stop_threshold=0.5, min_frames=4, max_frames=1000,
                          minlenratio=0.0, maxlenratio=0.0, guidance_weight=0.0)
# Constants of the released flowvae.py (not in its JSON config).
RELEASE_ENCODER_FIRST_CHANNELS = 12  # Encoder(base_channels=12): the first conv's width, whatever the config says
RELEASE_RESIDUAL_DILATIONS = tuple(2**i for i in range(6))  # ResStack(stack_kernel_size=3, base=2, nums=6)
RELEASE_FLOW = dict(flow_kernel_size=5, flow_layers=4, flow_couplings=4)  # ResidualCouplingBlock(.., 5, 1, 4)
RELEASE_CONV_PRE = dict(conv_pre_kernel_size=7, lookahead_frames=3)  # Conv1d(.., 7, 1, causal=False): pad 3
RELEASE_PROMPT_DROP_LAST = 1  # infer.py: prompt_mean_scale_latent[:, :, :-1]

_OUR_TOP = {"encoder": "audio_encoder", "flow": "flow", "decoder": None}
_WRAPPER_LEVELS = {"conv", "block"}


class ConversionError(ModelInvalid):
    """A checkpoint that does not match the released layout (names every offending tensor)."""


# ---------------------------------------------------------------------------------------------- helpers
def _numbered(state: Mapping[str, Any], pattern: str) -> List[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state for m in [regex.fullmatch(k)] if m})


def _require(state: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise ConversionError(f"{what}: tensor {key!r} is missing (is this the right checkpoint?)")
    return state[key]


def _listing(keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_names_and_shapes(
    given: Mapping[str, torch.Tensor], expected: Mapping[str, Tuple[int, ...]], what: str
) -> None:
    """Raise ``ConversionError`` naming every missing, unexpected and mis-shaped tensor (release names)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    bad = sorted(
        f"{k} {tuple(given[k].shape)} (expected {tuple(expected[k])})"
        for k in set(given) & set(expected)
        if tuple(given[k].shape) != tuple(expected[k])
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
    if bad:
        problems.append(f"{len(bad)} mis-shaped: {_listing(bad)}")
    if problems:
        raise ConversionError(f"{what} does not match the released layout: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------- Flow-VAE
def release_name(our_key: str) -> str:
    """Our FlowVAE parameter name -> the release's name for the same tensor."""
    key = our_key.replace(".parametrizations.weight.original0", ".weight_g")
    key = key.replace(".parametrizations.weight.original1", ".weight_v")
    parts = key.split(".")
    top = _OUR_TOP.get(parts[0], parts[0])
    parts = ([top] if top else []) + [p for p in parts[1:] if p not in _WRAPPER_LEVELS]
    return ".".join(parts)


def name_mapping(our_keys: Iterable[str]) -> Dict[str, str]:
    """release name -> our name for every tensor of our model (fails if two of ours would collide)."""
    mapping: Dict[str, str] = {}
    for ours in our_keys:
        theirs = release_name(ours)
        if theirs in mapping:
            raise RuntimeError(f"{ours} and {mapping[theirs]} both map to {theirs}")
        mapping[theirs] = ours
    return mapping


def generator_state(checkpoint: Any) -> Dict[str, torch.Tensor]:
    """The generator state dict of a released ``flowvae.pt`` (``{"generator": sd}``) or a bare state dict."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("generator"), Mapping):
        checkpoint = checkpoint["generator"]
    if not isinstance(checkpoint, Mapping) or not all(torch.is_tensor(v) for v in checkpoint.values()):
        raise ConversionError("the Flow-VAE checkpoint is not {'generator': state_dict} nor a state dict")
    return dict(checkpoint)


def _config_value(config: Mapping[str, Any], key: str) -> Any:
    if key not in config:
        raise ConversionError(f"the Flow-VAE config has no {key!r} (is it the released flowvae JSON?)")
    return config[key]


def flow_vae_params(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Our ``FlowVAE`` kwargs for a released Flow-VAE JSON config; ``ConversionError`` for what we cannot run.

    Every key the released ``FlowVAE`` reads is honoured; the rest of its architecture is fixed by its code
    (the ``RELEASE_*`` constants).
    """
    get = functools.partial(_config_value, config)
    if str(get("resblock")) != "1":
        raise ConversionError(f"resblock {get('resblock')!r}: the released flowvae.py defines only AMP block '1'")
    if get("activation") not in ("snake", "snakebeta"):
        raise ConversionError(f"activation {get('activation')!r}: the released flowvae.py has 'snake' and 'snakebeta'")
    if not get("use_vae"):
        raise ConversionError("use_vae false: the released FlowVAE asserts use_vae (the LM needs mean|log_scale)")
    if not get("causal"):
        raise ConversionError("causal false (a non-causal flow and decoder) is not supported: only the released "
                              "causal variant is implemented")
    rates, channels = [int(r) for r in get("downsample_rates")], [int(c) for c in get("downsample_channels")]
    if len(channels) != len(rates) + 1 or channels[0] != RELEASE_ENCODER_FIRST_CHANNELS:
        raise ConversionError(
            f"downsample_channels {channels}: the released encoder needs {len(rates) + 1} entries (one more than "
            f"downsample_rates) starting at {RELEASE_ENCODER_FIRST_CHANNELS} (its first conv is 1 -> 12 channels)"
        )
    ups, up_kernels = [int(r) for r in get("upsample_rates")], [int(k) for k in get("upsample_kernel_sizes")]
    if len(ups) != len(up_kernels) or any(k != 2 * u for u, k in zip(ups, up_kernels)):
        raise ConversionError(f"upsample_kernel_sizes {up_kernels} must be twice upsample_rates {ups} (the "
                              "released causal ConvTranspose1d asserts it)")
    kernels, dilations = list(get("resblock_kernel_sizes")), [list(d) for d in get("resblock_dilation_sizes")]
    if len(kernels) != len(dilations) or any(len(d) != 3 for d in dilations):
        raise ConversionError(f"resblock_dilation_sizes {dilations}: the released AMP block '1' takes exactly three "
                              f"dilations per kernel size ({len(kernels)} kernel sizes)")
    if math.prod(ups) != math.prod(rates):
        raise ConversionError(f"upsample_rates {ups} (x{math.prod(ups)}) and downsample_rates {rates} "
                              f"(x{math.prod(rates)}) must give the same hop length")
    latent_dim = int(get("latent_dim"))
    if latent_dim % 2:
        raise ConversionError(f"latent_dim {latent_dim} must be even (the flow couples two halves)")
    decoder_conf = dict(
        upsample_rates=ups,
        upsample_kernel_sizes=up_kernels,
        upsample_initial_channel=int(get("upsample_initial_channel")),
        resblock_kernel_sizes=[int(k) for k in kernels],
        resblock_dilation_sizes=[[int(x) for x in d] for d in dilations],
        snake_logscale=bool(get("snake_logscale")),
        activation=str(get("activation")),
        anti_alias_padding="replicate",
        **RELEASE_CONV_PRE,
    )
    return dict(
        sample_rate=int(config.get("sampling_rate", 16000)),
        latent_dim=latent_dim,
        downsample_rates=rates,
        downsample_channels=channels,
        residual_dilations=list(RELEASE_RESIDUAL_DILATIONS),
        encoder_conf=dict(causal=False, activation="leaky_relu"),
        flow_hidden_channels=int(get("flow_hidden_channels")),
        **RELEASE_FLOW,
        decoder_type="bigvgan",
        decoder_conf=decoder_conf,
        prompt_drop_last=RELEASE_PROMPT_DROP_LAST,
    )


def convert_flow_vae(config: Mapping[str, Any], checkpoint: Any) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(FlowVAE kwargs, state dict in our names, dtypes kept) from the released config + ``flowvae.pt`` content."""
    from espnet_kalle.codec.flow_vae import FlowVAE

    state = generator_state(checkpoint)
    params = flow_vae_params(config)
    with torch.device("meta"):  # names and shapes only
        expected = FlowVAE(**params).state_dict()
    mapping = name_mapping(expected)
    check_names_and_shapes(state, {k: expected[v].shape for k, v in mapping.items()}, "Flow-VAE checkpoint")
    return params, {mapping[k]: v for k, v in state.items()}


# ---------------------------------------------------------------------------------------------- LM
_LM_PREFIXES = (("base_model.model.", "lm.backbone."), ("audio_linear.", "lm.audio_linear."),
                ("distribution_linear.", "lm.head.distribution_linear."))
TIED_HEAD = "base_model.lm_head.weight"


def lm_params(
    state: Mapping[str, torch.Tensor],
    head_dim: int = LLAMA32_1B["head_dim"],
    rope_theta: float = LLAMA32_1B["rope_theta"],
    rope_scaling: Optional[Mapping[str, Any]] = LLAMA3_ROPE_SCALING,
    max_position_embeddings: int = LLAMA32_1B["max_position_embeddings"],
    sep_token_ids: Sequence[int] = RELEASE_SEP_IDS,
) -> Dict[str, Any]:
    """``vocab_size``, ``latent_dim`` and the ``lm_conf`` of our KalleLM, inferred from the released shapes."""
    what = "LM checkpoint"
    vocab, hidden = _require(state, "base_model.model.embed_tokens.weight", what).shape
    layers = _numbered(state, r"base_model\.model\.layers\.(\d+)\.self_attn\.q_proj\.weight")
    if not layers or layers != list(range(len(layers))):
        raise ConversionError(f"{what}: decoder layers are not numbered 0..N-1 (found {layers[:5]}...)")
    q_rows = _require(state, "base_model.model.layers.0.self_attn.q_proj.weight", what).shape[0]
    kv_rows = _require(state, "base_model.model.layers.0.self_attn.k_proj.weight", what).shape[0]
    if q_rows % head_dim or kv_rows % head_dim:
        raise ConversionError(f"{what}: attention sizes {q_rows}/{kv_rows} are not multiples of head_dim {head_dim}")
    ffn = _require(state, "base_model.model.layers.0.mlp.gate_proj.weight", what).shape[0]
    audio_hidden, latent_dim = _require(state, "audio_linear.weight", what).shape
    dist_rows = _require(state, "distribution_linear.weight", what).shape[0]
    if audio_hidden != hidden or dist_rows != 2 * latent_dim:
        raise ConversionError(
            f"{what}: audio_linear {audio_hidden}x{latent_dim} / distribution_linear {dist_rows} rows do not fit "
            f"hidden {hidden} and mean|log_scale of {latent_dim}"
        )
    bad_ids = [i for i in sep_token_ids if not 0 <= int(i) < vocab]
    if bad_ids:
        raise ConversionError(f"separator ids {bad_ids} are outside the LM vocabulary of {vocab}")
    return dict(
        vocab_size=int(vocab),
        latent_dim=int(latent_dim),
        lm_conf=dict(
            hidden_size=int(hidden), num_layers=len(layers), num_heads=q_rows // head_dim,
            num_kv_heads=kv_rows // head_dim, head_dim=int(head_dim), intermediate_size=int(ffn),
            max_position_embeddings=int(max_position_embeddings), rope_theta=float(rope_theta),
            rope_scaling=dict(rope_scaling) if rope_scaling else None,
            sep_token_ids=[int(i) for i in sep_token_ids],
        ),
    )


def _our_lm_name(key: str) -> Optional[str]:
    for theirs, ours in _LM_PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return None


def convert_lm(checkpoint: Any, **options: Any) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(``lm_params`` dict, state dict in our ``KallE`` names) from the released ``model.pt`` content.

    Tensors keep their dtype (float16 in the release); our models are float32 and cast them when loading.

    ``base_model.lm_head.weight`` (the tied text-prediction head) is checked for shape and dropped: speech
    generation never predicts text tokens.
    """
    from espnet_kalle.lm.model import KalleLM

    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, Mapping) or not all(torch.is_tensor(v) for v in checkpoint.values()):
        raise ConversionError("the LM checkpoint is not a state dict")
    state = dict(checkpoint)
    params = lm_params(state, **options)
    with torch.device("meta"):
        lm = KalleLM(vocab_size=params["vocab_size"], latent_dim=params["latent_dim"], **params["lm_conf"])
    expected = {f"lm.{k}": v.shape for k, v in lm.state_dict().items()}
    release_expected = {theirs: expected[ours] for theirs in state
                        for ours in [_our_lm_name(theirs)] if ours in expected}
    for ours, shape in expected.items():  # what we need but the checkpoint lacks, in release names
        theirs = next(t + ours[len(o):] for t, o in _LM_PREFIXES if ours.startswith(o))
        release_expected.setdefault(theirs, shape)
    release_expected[TIED_HEAD] = torch.Size([params["vocab_size"], params["lm_conf"]["hidden_size"]])
    check_names_and_shapes(state, release_expected, "LM checkpoint")
    head = state.pop(TIED_HEAD)
    if not torch.equal(head, state["base_model.model.embed_tokens.weight"]):
        logger.warning("%s differs from the embeddings; dropped anyway (unused for speech)", TIED_HEAD)
    return params, {_our_lm_name(k): v for k, v in state.items()}
