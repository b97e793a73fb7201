"""kalle-convert-official: turn the released KALL-E weights into a model dir every entry point of ours loads.

    kalle-convert-official --release KALL-E --out exp/kalle-official

``--release`` is a checkout of github.com/xkx-hub/KALL-E with the weights where its ``infer.py`` expects them
(``ckpt/flowvae.pt``, ``ckpt/model.pt``); its ``configs/flowvae_dim1024_12p5hz.json`` and ``tokenizer_dir`` are
used as they are. Each part can also be given on its own (and overrides the checkout's):

    kalle-convert-official --flowvae flowvae.pt --flowvae-config config.json --lm model.pt \
        [--tokenizer KALL-E/tokenizer_dir] --out exp/kalle-official

The released LM has no speaker encoder: voices come from prompts (``synth.clone(wav, transcript)``), and the
model.yaml says so. Without ``--tokenizer`` the separator ids are the release's (128263, 128260) and the
tokenizer files must be copied to ``OUT/tokenizer`` before loading.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet_kalle.bin.cli import ArgumentParser, check_output_dir, run_main
from espnet_kalle.checkpoint import load_weights
from espnet_kalle.compat.official import (
    LLAMA32_1B,
    RELEASE_GENERATION,
    RELEASE_SEP_IDS,
    RELEASE_SEP_TOKENS,
    ConversionError,
    convert_flow_vae,
    convert_lm,
)
from espnet_kalle.errors import InputError, ModelInvalid, ModelNotFound
from espnet_kalle.pretrained.pack import write_model_dir

PROG = "kalle-convert-official"

TOKENIZER_DIR = "tokenizer"
# Where the released checkout keeps each part (infer.py's defaults).
RELEASE_LAYOUT = {"flowvae": "ckpt/flowvae.pt", "flowvae_config": "configs/flowvae_dim1024_12p5hz.json",
                  "lm": "ckpt/model.pt", "tokenizer": "tokenizer_dir"}


def release_parts(args: argparse.Namespace) -> Dict[str, Optional[Path]]:
    """Each part from its own option, else from the ``--release`` checkout; a missing required one is an error."""
    parts: Dict[str, Optional[Path]] = {}
    for key, relative in RELEASE_LAYOUT.items():
        given = getattr(args, key)
        if given is None and args.release is not None:
            given = args.release / relative
            if not given.exists():
                raise ModelNotFound(f"{given} not found: the release checkout keeps {key} at {relative} "
                                    f"(or pass --{key.replace('_', '-')})")
        if given is None and key != "tokenizer":
            raise InputError(f"--{key.replace('_', '-')} is required without --release")
        if given is not None and not given.exists():
            raise ModelNotFound(f"--{key.replace('_', '-')} {given}: not found")
        parts[key] = given
    return parts


def separator_ids(tokenizer_dir: Optional[Path]) -> List[int]:
    """<|SPEECH_UNDERSTANDING_END|>, <|SPEECH_GENERATION_START|> ids: from the tokenizer when given."""
    if tokenizer_dir is None:
        return list(RELEASE_SEP_IDS)
    from espnet_kalle.text import HFTokenizer

    try:
        tokenizer = HFTokenizer(tokenizer_dir)
    except (OSError, ValueError) as exc:
        raise ModelInvalid(f"{tokenizer_dir}: not a readable Hugging Face tokenizer dir ({exc})") from exc
    try:
        return [tokenizer.token_id(t) for t in RELEASE_SEP_TOKENS]
    except KeyError as exc:
        raise ConversionError(f"{tokenizer_dir}: {exc.args[0]} (not the released KALL-E tokenizer?)") from exc


def _released(path: Path, what: str) -> Any:
    """A released checkpoint; missing or unreadable, it is a model error (``ModelNotFound``/``ModelInvalid``)."""
    try:
        return load_weights(path, what)
    except FileNotFoundError as exc:
        raise ModelNotFound(str(exc)) from exc
    except ValueError as exc:
        raise ModelInvalid(str(exc)) from exc


def convert(flowvae: Path, flowvae_config: Path, lm: Path, out: Path, tokenizer: Optional[Path] = None,
            name: Optional[str] = None, head_dim: int = LLAMA32_1B["head_dim"], half: bool = False) -> Path:
    """Convert and write the model dir; raises ``ConversionError`` naming every mismatching tensor."""
    try:
        release_config: Dict[str, Any] = json.loads(Path(flowvae_config).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{flowvae_config}: not a JSON Flow-VAE config ({exc})") from exc
    codec_params, codec_state = convert_flow_vae(release_config, _released(flowvae, "Flow-VAE checkpoint"))
    sep_ids = separator_ids(tokenizer)
    lm_info, lm_state = convert_lm(_released(lm, "LM checkpoint"), head_dim=head_dim, sep_token_ids=sep_ids)
    sample_rate = codec_params.pop("sample_rate")
    codec_config = {"codec": "flow_vae", "codec_conf": {"sampling_rate": sample_rate,
                                                        "generator_params": codec_params}}
    lm_config = {
        "tts": "kalle",
        "token_type": "hf",
        "tokenizer_dir": TOKENIZER_DIR,  # relative to the model dir
        "vocab_size": lm_info["vocab_size"],
        "odim": 2 * lm_info["latent_dim"],
        "tts_conf": {
            "latent_dim": lm_info["latent_dim"],
            "sample_rate": sample_rate,
            "lm_conf": lm_info["lm_conf"],
            "generation_conf": dict(RELEASE_GENERATION),
        },
    }
    if lm_info["latent_dim"] != codec_params["latent_dim"]:
        raise ConversionError(
            f"the LM works on {lm_info['latent_dim']}-d latents, the Flow-VAE makes {codec_params['latent_dim']}-d ones"
        )
    meta = {"source": "official KALL-E release", "speaker_encoder": False,
            "voices": "from prompts: clone a recording with its transcript (no preset voices)"}
    out = Path(out)
    codec_state = {f"codec.generator.{k}": v for k, v in codec_state.items()}  # as an ESPnet codec model file
    write_model_dir(out, lm_config, lm_state, codec_config, codec_state, name or out.name, half, meta)
    if tokenizer is not None:
        if (out / TOKENIZER_DIR).exists():
            shutil.rmtree(out / TOKENIZER_DIR)
        shutil.copytree(tokenizer, out / TOKENIZER_DIR)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Exit codes: 0 ok, 2 bad input (options, output dir), 3 released weights missing, unreadable or not
    convertible (``espnet_kalle.bin.cli``)."""
    return run_main(PROG, lambda: _run(argv), model="the released model")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", type=Path, default=None, help="checkout of the KALL-E release (see above)")
    parser.add_argument("--flowvae", type=Path, default=None, help="released flowvae.pt ({'generator': ...})")
    parser.add_argument("--flowvae-config", type=Path, default=None, help="released Flow-VAE JSON config")
    parser.add_argument("--lm", type=Path, default=None, help="released model.pt (LM state dict)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="the release's tokenizer_dir (a Hugging Face tokenizer dir; copied)")
    parser.add_argument("--out", type=Path, required=True, help="the model dir to write")
    parser.add_argument("--name", default=None, help="model name in model.yaml (default: the --out dir's name)")
    parser.add_argument("--head-dim", type=int, default=LLAMA32_1B["head_dim"],
                        help=f"attention head size of the released LM (default {LLAMA32_1B['head_dim']})")
    parser.add_argument("--half", action="store_true", help="store all weights as float16 (they load as float32)")
    parser.add_argument("--check-prompts", type=Path, default=None, metavar="PROMPT_DIR",
                        help="after converting, compare our encoder with the release's prompt_dir/*.npy latents "
                             "(made by the real released Flow-VAE from prompt_dir/*.wav); see compat/prompt_check.py")
    return parser


def _run(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    check_output_dir(args.out)
    if args.check_prompts is not None and not args.check_prompts.is_dir():
        raise InputError(f"--check-prompts {args.check_prompts}: not a directory")
    parts = release_parts(args)
    out = convert(parts["flowvae"], parts["flowvae_config"], parts["lm"], args.out, parts["tokenizer"],
                  args.name, args.head_dim, args.half)
    print(f"converted model dir: {out}")
    if args.check_prompts is not None:
        print_prompt_check(out, args.check_prompts)
    return 0


def print_prompt_check(model_dir: Path, prompt_dir: Path) -> None:
    """One line per released prompt: frames (ours / release), corr with our mu, z mean / std."""
    from espnet_kalle.codec.load import load_flow_vae
    from espnet_kalle.compat.prompt_check import check_prompt_dir

    codec = load_flow_vae(model_dir / "codec" / "config.yaml", model_dir / "codec" / "model.pth").eval()
    print("prompt\tframes\trelease_frames\tcorr\tz_mean\tz_std")
    for row in check_prompt_dir(codec, prompt_dir):
        values = [row.get(k, float("nan")) for k in ("frames", "release_frames", "corr", "z_mean", "z_std")]
        print(row["prompt"] + "".join(f"\t{v:.0f}" if i < 2 else f"\t{v:.3f}" for i, v in enumerate(values)))


if __name__ == "__main__":
    sys.exit(main())
