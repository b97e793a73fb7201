"""What does a trained LM condition on? Teacher-forced KL per frame with its inputs swapped.

A model that babbles or whose voices all sound alike can fail in different places; this tells them apart without
sampling. For each utterance of a Kaldi data dir, the packed model's Flow-VAE encodes the recording into its
posterior q, one latent sequence is drawn from q (the same draw for every variant), and the LM's predicted
distributions are scored by KL(q || p) per frame, averaged over frames and utterances, with:

- text: the utterance's own transcript vs another utterance's (the gap is what the LM reads from the text);
- speaker (models with a speaker encoder): the recording's own speaker latent vs zeros (the prior mean) vs the
  latent of another speaker's recording (no gap: the speaker latent is ignored, e.g. a collapsed speaker KL);
- weights: the float LM vs a copy with torch's dynamic int8 Linear layers, the cost of int8 weights (the
  synthesizer's int8 mode quantises the same MatMuls in its onnxruntime step).

    python -m espnet_kalle.recipe.probe_conditioning --model_dir exp/lm_train_kalle/packed --data_dir dump/raw/dev \
        [--num_utts 40] [--seed 0] [--out exp/lm_train_kalle/probe.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from espnet_kalle.audio import load_audio
from espnet_kalle.kaldi_io import read_kaldi_map, read_wav_scp
from espnet_kalle.lm.next_distribution import next_distribution_loss
from espnet_kalle.lm.quantize import quantize_lm
from espnet_kalle.recipe.probe_io import emit, missing_data_file


def _kl_per_frame(lm, ids: torch.Tensor, z: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
                  speaker: Optional[torch.Tensor]) -> float:
    """The training objective's KL(q_t || p_t) per frame, without the end term."""
    with torch.inference_mode():
        mu_p, ls_p = lm(ids[None], torch.tensor([ids.numel()]), z[None], torch.tensor([z.shape[0]]),
                        None if speaker is None else speaker[None])
        terms = next_distribution_loss(mu_p, ls_p, mu[None], log_sigma[None], torch.tensor([z.shape[0]]), 0.0)
    return float(terms["kl_per_frame"])


def probe(model_dir: str, data_dir: Path, num_utts: int = 40, seed: int = 0) -> Dict[str, float]:
    """Mean KL/frame per variant (see the module docstring) over the first ``num_utts`` utterances."""
    from espnet_kalle.synthesizer import KalleSynthesizer

    synth = KalleSynthesizer.from_pretrained(model_dir)
    if synth.model.lm.head_type != "gaussian_kl":
        raise SystemExit("probe_conditioning scores predicted distributions: it needs a gaussian_kl (KALL-E) model")
    lm = synth.model.lm.float().eval()
    int8_lm = quantize_lm(lm)
    texts, wavs = read_kaldi_map(data_dir / "text"), read_wav_scp(data_dir / "wav.scp")
    utt2spk_path = data_dir / "utt2spk"
    utt2spk = read_kaldi_map(utt2spk_path) if utt2spk_path.is_file() else {u: u for u in wavs}
    utts = [u for u in wavs if texts.get(u)][:num_utts]
    if len(utts) < 2:
        raise SystemExit(f"{data_dir}: need at least 2 utterances with text and audio, found {len(utts)}")
    has_speaker = synth.model.speaker is not None
    generator = torch.Generator().manual_seed(seed)
    recordings = {u: load_audio(wavs[u], synth.sample_rate) for u in utts}
    speakers = {u: synth.model.speaker_from_wav(torch.from_numpy(recordings[u])) for u in utts} if has_speaker else {}
    scores: Dict[str, List[float]] = {}
    for i, utt in enumerate(utts):
        with torch.inference_mode():
            mu, log_sigma = (x[0].transpose(0, 1) for x in synth.codec.encode(torch.from_numpy(recordings[utt])
                                                                             .view(1, 1, -1)))
        z = mu + log_sigma.exp() * torch.randn(mu.shape, generator=generator)
        ids = torch.tensor(synth.tokenizer(texts[utt]))
        other_ids = torch.tensor(synth.tokenizer(texts[utts[(i + len(utts) // 2) % len(utts)]]))
        own = speakers.get(utt)
        variants = {"own text": (lm, ids, own), "other text": (lm, other_ids, own), "int8 LM": (int8_lm, ids, own)}
        if has_speaker:
            others = [u for u in utts if utt2spk[u] != utt2spk[utt]]
            variants["zero speaker"] = (lm, ids, torch.zeros_like(own))
            if others:
                variants["other speaker"] = (lm, ids, speakers[others[i % len(others)]])
        for name, (model, text_ids, speaker) in variants.items():
            scores.setdefault(name, []).append(_kl_per_frame(model, text_ids, z, mu, log_sigma, speaker))
    result = {name: float(np.mean(values)) for name, values in scores.items()}
    if has_speaker:
        result["speaker latent norm"] = float(np.mean([s.norm().item() for s in speakers.values()]))
    result["utterances"] = len(utts)
    return result


def markdown(result: Dict[str, float]) -> str:
    lines = ["| variant | KL/frame | vs own text |", "| --- | ---: | ---: |"]
    base = result["own text"]
    for name, value in result.items():
        if name in ("speaker latent norm", "utterances"):
            continue
        lines.append(f"| {name} | {value:.3f} | {value - base:+.3f} |")
    extra = f"{int(result['utterances'])} utterances"
    if "speaker latent norm" in result:
        extra += f"; mean speaker latent norm {result['speaker latent norm']:.3f}"
    return "\n".join(lines) + f"\n\n{extra}\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True, help="packed model dir (stage 7) or a registered name")
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with text, wav.scp [, utt2spk]")
    parser.add_argument("--num_utts", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    missing = missing_data_file(args.data_dir)
    if missing is not None:
        raise SystemExit(f"{missing}: not found")
    result = probe(args.model_dir, args.data_dir, args.num_utts, args.seed)
    emit(markdown(result), result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
