"""Speed of the embedded default model (mini-en) on CPU, against parameter-matched ESPnet VITS and Transformer-TTS.

Why: mini-en promises faster-than-real-time CPU synthesis (targets: RTF <= 0.05 end to end, first streamed chunk
<= 150 ms for a 10-word sentence). This measures both through the public API, and puts the numbers next to ESPnet's
VITS and Transformer-TTS of about the same size, built in-process with random weights (speed does not depend on
training), so the comparison is against models a user of ESPnet would otherwise pick.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_mini_en.py [--model mini-en | MODEL_DIR] [--threads 2]
        [--repeats 3] [--voice NAME] [--seed 0] [--int8] [--pytorch-steps]

Run on an idle machine: other processes make OpenMP threads spin and the numbers several times worse.

What is timed (median of --repeats after one warm-up call per sentence; RTF = compute seconds / audio seconds):
- KALL-E: ``KalleSynthesizer.synthesize(text, voice, seed)`` = LM generation + Flow-VAE decoding, per sentence;
  TTFA = time from calling ``stream(text)`` to its first chunk on the 10-word sentence, plus the total stream time.
  Parameters = LM + Flow-VAE decoder (the parts used at inference; not the Flow-VAE encoder/flow, nor the speaker
  encoder, which only cloning uses). ``--int8`` adds a row with the synthesizer's own int8 mode (``int8=True`` /
  ``kalle-tts --int8``: int8 MatMul weights in the LM's per-frame step). The LM's prompt and per-frame steps and
  the Flow-VAE's istft decoder run in onnxruntime (``KalleSynthesizer.onnx_steps``); ``--pytorch-steps`` adds rows
  with both in eager PyTorch (torch's dynamic int8 Linear layers for int8), the path before onnxruntime. With
  ``--threads 1`` on a 2-core machine the LM samples in a worker thread while the caller's thread decodes
  (``KalleSynthesizer.run_ahead``): two threads in all.
- VITS (espnet2.gan_tts.vits VITSGenerator, weight norm off): its hidden/decoder widths are scaled together until
  its inference parameters (all but the posterior encoder) match KALL-E's total. Random durations would give any
  length, so the output length is forced to KALL-E's: the stochastic duration predictor runs (and is timed) on the
  text encoding, but its output is replaced by durations spreading F = KALL-E samples / 256 frames over the tokens.
- Transformer-TTS (espnet2.tts.transformer, 80-bin mel, r = 1) + HiFi-GAN (espnet2.gan_tts.hifigan
  HiFiGANGenerator): the acoustic model is width-matched to KALL-E's LM and the vocoder to the Flow-VAE decoder, so
  the pair matches KALL-E's total. A random model never stops by itself: threshold 2.0 (a sigmoid never reaches it)
  and maxlenratio = (F + 0.5) / (tokens + 1) make exactly F decoder steps, F as for VITS.
Both baselines read the same token ids (the model's own tokenizer) and run at KALL-E's sample rate with hop 256.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from timing import median_seconds  # benchmarks/timing.py

from espnet_kalle import KalleSynthesizer

SENTENCES = {
    "short": "Good morning.",
    "10 words": "The quick brown fox jumps over the lazy sleeping dog today.",
    "long": "When the storm finally passed, the fishermen pulled their boats back onto the sand, counted the nets, "
    "and walked slowly home through the quiet village.",
}
TTFA_SENTENCE = "10 words"
HOP, N_MELS = 256, 80  # baselines' frame hop (samples) and mel bins
TARGET_RTF, TARGET_TTFA_MS = 0.05, 150.0
# Deprecation notices of torch (weight_norm in ESPnet modules, torch.ao quantization) and ESPnet's VITS note on
# its monotonic-alignment build, which inference does not use.
for category in (FutureWarning, DeprecationWarning):
    warnings.filterwarnings("ignore", category=category)
warnings.filterwarnings("ignore", message="Cython version is not available")


@dataclass
class Row:
    params: int
    rtf: Dict[str, float]  # per SENTENCES key
    ttfa_ms: Optional[float] = None  # streaming systems only
    stream_s: Optional[float] = None


def n_params(module: torch.nn.Module, skip: Tuple[str, ...] = ()) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if not name.startswith(skip))


def fit_width(build: Callable[[float], torch.nn.Module], count: Callable[[torch.nn.Module], int],
              target: int) -> torch.nn.Module:
    """Bisect (in log scale, counting on the meta device) a width scale so that ``count(build(scale))`` is closest
    to ``target``; returns the model built for real at that scale."""
    low, high, best, best_gap = -8.0, 3.0, 1.0, float("inf")
    for _ in range(20):
        middle = (low + high) / 2
        with torch.device("meta"):
            params = count(build(2**middle))
        if abs(params - target) < best_gap:
            best, best_gap = 2**middle, abs(params - target)
        low, high = (middle, high) if params < target else (low, middle)
    return build(best).eval()


def round_to(x: float, multiple: int) -> int:
    return max(multiple, multiple * round(x / multiple))


def build_vits(vocab: int, scale: float) -> torch.nn.Module:
    from espnet2.gan_tts.vits.generator import VITSGenerator

    torch.manual_seed(0)  # default widths at scale 1: hidden 192, decoder 512
    return VITSGenerator(vocabs=vocab, hidden_channels=round_to(192 * scale, 2),
                         decoder_channels=round_to(512 * scale, 16), use_weight_norm_in_decoder=False,
                         use_weight_norm_in_flow=False)


def build_transformer(vocab: int, scale: float) -> torch.nn.Module:
    from espnet2.tts.transformer import Transformer

    torch.manual_seed(0)  # default widths at scale 1: adim 512, units 1024, prenets/postnet 256
    adim, chans = round_to(512 * scale, 4), round_to(256 * scale, 1)
    return Transformer(idim=vocab, odim=N_MELS, embed_dim=adim, eprenet_conv_chans=chans, dprenet_units=chans,
                       adim=adim, eunits=2 * adim, dunits=2 * adim, postnet_chans=chans, reduction_factor=1)


def build_hifigan(scale: float) -> torch.nn.Module:
    from espnet2.gan_tts.hifigan import HiFiGANGenerator

    torch.manual_seed(0)  # upsample 8 x 8 x 2 x 2 = HOP
    return HiFiGANGenerator(in_channels=N_MELS, channels=round_to(512 * scale, 16), use_weight_norm=False)


def vits_call(vits: torch.nn.Module, ids: torch.Tensor, frames: int) -> Callable[[], object]:
    text, lengths = ids[None], torch.tensor([ids.numel()])
    with torch.inference_mode():
        x, _, _, x_mask = vits.text_encoder(text, lengths)
    dur = torch.full((1, 1, ids.numel()), frames // ids.numel(), dtype=torch.float)
    dur[..., : frames % ids.numel()] += 1  # sums to exactly ``frames``

    def run() -> object:
        with torch.inference_mode():
            vits.duration_predictor(x, x_mask, inverse=True, noise_scale=0.8)  # timed, then overridden
            return vits.inference(text, lengths, dur=dur)

    return run


def transformer_call(tts: torch.nn.Module, vocoder: torch.nn.Module, ids: torch.Tensor,
                     frames: int) -> Callable[[], object]:
    ratio = (frames + 0.5) / (ids.numel() + 1)  # the encoder sees the ids + <eos>

    def run() -> object:
        with torch.inference_mode():
            mel = tts.inference(ids, threshold=2.0, maxlenratio=ratio)["feat_gen"]
            assert mel.shape[0] == frames, (mel.shape, frames)
            return vocoder.inference(mel)

    return run


def bench_kalle(synth: KalleSynthesizer, params: int, args: argparse.Namespace) -> Tuple[Row, Dict[str, float]]:
    """RTF per sentence, TTFA and total stream time on the 10-word sentence; and audio seconds per sentence."""
    def say(text: str) -> np.ndarray:
        return synth.synthesize(text, voice=args.voice, seed=args.seed)

    seconds = {k: say(t).shape[0] / synth.sample_rate for k, t in SENTENCES.items()}
    rtf = {k: median_seconds(lambda t=t: say(t), args.repeats) / seconds[k] for k, t in SENTENCES.items()}
    firsts, totals = [], []
    for i in range(args.repeats + 1):  # the first run is a warm-up
        start = time.perf_counter()
        stream = synth.stream(SENTENCES[TTFA_SENTENCE], voice=args.voice, seed=args.seed)
        next(stream)
        first = time.perf_counter() - start
        for _ in stream:
            pass
        if i:
            firsts.append(first)
            totals.append(time.perf_counter() - start)
    return Row(params, rtf, 1000 * statistics.median(firsts), statistics.median(totals)), seconds


def bench_baseline(call: Callable, models: Tuple[torch.nn.Module, ...], params: int, synth: KalleSynthesizer,
                   seconds: Dict[str, float], repeats: int) -> Row:
    """RTF per sentence of a baseline forced to make as many samples (rounded to frames) as KALL-E did."""
    rtf = {}
    for key, text in SENTENCES.items():
        frames = max(1, round(seconds[key] * synth.sample_rate / HOP))
        ids = torch.tensor(synth.tokenizer(text))
        rtf[key] = median_seconds(call(*models, ids, frames), repeats) / (frames * HOP / synth.sample_rate)
    return Row(params, rtf)


def load(model: str) -> KalleSynthesizer:
    try:
        return KalleSynthesizer.from_pretrained(model)
    except FileNotFoundError as error:
        sys.exit(f"error: cannot load model {model!r}: {error}\n"
                 "pass --model MODEL_DIR (a packed model dir, see python -m espnet_kalle.pretrained.pack)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mini-en", help="registered model name or packed model dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--voice", default=None, help="preset voice (default: the model's default voice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--int8", action="store_true", help="also time the LM with dynamic int8 nn.Linear layers")
    parser.add_argument("--pytorch-steps", action="store_true",
                        help="also time KALL-E with the LM and decoder in eager PyTorch instead of onnxruntime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    synth = load(args.model)
    lm_params, dec_params = n_params(synth.model.lm), n_params(synth.codec.decoder)
    target = lm_params + dec_params
    vocab = len(getattr(synth.tokenizer, "token_list", None) or synth.tokenizer.tokenizer)
    worker = "yes" if synth.runs_ahead else "no"
    print(f"torch {torch.__version__}, {args.threads} threads (+ LM worker thread: {worker}), "
          f"model {synth.name!r} at {synth.sample_rate} Hz, "
          f"median of {args.repeats}; KALL-E params: LM {lm_params / 1e6:.2f}M + Flow-VAE decoder "
          f"{dec_params / 1e6:.2f}M")

    rows: Dict[str, Row] = {}
    seconds: Dict[str, float] = {}
    for int8 in (False, True) if args.int8 else (False,):
        for onnx_steps in (True, False) if args.pytorch_steps else (True,):
            synth.int8, synth.onnx_steps = int8, onnx_steps  # int8: what kalle-tts --int8 uses
            name = "KALL-E" + (", int8 LM" if int8 else "") + ("" if onnx_steps else ", PyTorch steps")
            rows[name], lengths = bench_kalle(synth, target, args)
            seconds = seconds or lengths  # the baselines make as much audio as the first (float) row

    def vits_params(m: torch.nn.Module) -> int:
        return n_params(m, ("posterior_encoder",))

    vits = fit_width(lambda s: build_vits(vocab, s), vits_params, target)
    rows["ESPnet VITS"] = bench_baseline(vits_call, (vits,), vits_params(vits), synth, seconds, args.repeats)
    tts = fit_width(lambda s: build_transformer(vocab, s), n_params, lm_params)
    vocoder = fit_width(build_hifigan, n_params, dec_params)
    print(f"baselines: VITS {vits_params(vits) / 1e6:.2f}M (without the posterior encoder); Transformer-TTS "
          f"{n_params(tts) / 1e6:.2f}M + HiFi-GAN {n_params(vocoder) / 1e6:.2f}M")
    rows["ESPnet Transformer-TTS + HiFi-GAN"] = bench_baseline(
        transformer_call, (tts, vocoder), n_params(tts) + n_params(vocoder), synth, seconds, args.repeats)
    print_table(rows, seconds)


def print_table(rows: Dict[str, Row], seconds: Dict[str, float]) -> None:
    keys: List[str] = list(SENTENCES)
    print("\n| system | params (M) | " + " | ".join(f"RTF {k} ({seconds[k]:.1f} s)" for k in keys)
          + f" | TTFA {TTFA_SENTENCE} (ms) | stream total (s) |")
    print("| --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: | ---: |")
    for name, row in rows.items():
        stream = ("n/a (offline)", "n/a") if row.ttfa_ms is None else (f"{row.ttfa_ms:.0f}", f"{row.stream_s:.2f}")
        print(f"| {name} | {row.params / 1e6:.2f} | " + " | ".join(f"{row.rtf[k]:.3f}" for k in keys)
              + f" | {stream[0]} | {stream[1]} |")
    print(f"\nratios vs targets (RTF / {TARGET_RTF}, TTFA / {TARGET_TTFA_MS:.0f} ms; <= 1 meets the target):")
    for name, row in rows.items():
        ttfa = "" if row.ttfa_ms is None else f"; TTFA {row.ttfa_ms / TARGET_TTFA_MS:.2f}x"
        print(f"  {name}: RTF " + ", ".join(f"{k} {row.rtf[k] / TARGET_RTF:.2f}x" for k in keys) + ttfa)
    base = rows["KALL-E"].rtf
    print("ratios vs KALL-E (RTF / KALL-E RTF; > 1: KALL-E is faster):")
    for name, row in list(rows.items())[1:]:
        print(f"  {name}: " + ", ".join(f"{k} {row.rtf[k] / base[k]:.2f}x" for k in keys))


if __name__ == "__main__":
    main()
