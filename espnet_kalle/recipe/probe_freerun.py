"""Does the LM speak when it runs on its own samples? Free-running WER next to teacher forcing and resynthesis.

The yardstick for every training choice against babble (issue 25): on a fixed set of held-out sentences (the first
``--num_utts`` of a Kaldi dir, in its order) it scores, with the recipe's ASR scorer:

- ``resynthesis``: the recording encoded by the model's Flow-VAE and decoded from the posterior mean (the ceiling);
- ``teacher-forced``: the LM's predicted means (a mixture head: its most probable component's) given the true
  history (posterior samples), decoded;
- ``free t=...``: the sentence generated as a user gets it (``KalleSynthesizer.synthesize``: int8 step and
  onnxruntime when the model dir says so), at the shipped temperature and at 0 (more with ``--temperatures``).

It prints WER, the length ratio (audio seconds against the recording's) and the share of sentences that never
reached the stop rule. Voice (``--voice``): ``own`` (a speaker model reads each recording's own speaker latent, so
every row conditions on the same voice; a model without a speaker encoder has one voice), a preset or a seed, or
one of the two ways voices continue a prompt, for any checkpoint: ``clone`` (another recording of the same speaker
and its transcript, as stage 9's clone) and ``prompted:SEED`` (the seed's latent with a prompt it speaks itself,
as ``pack`` makes presets). Teacher-forced rows read the voice's speaker latent alone.

    python -m espnet_kalle.recipe.probe_freerun --model_dir exp/lm_x/packed --data_dir dump/raw/test
    python -m espnet_kalle.recipe.probe_freerun --lm_config exp/lm_x/config.yaml --lm_model "exp/lm_x/20epoch.pth" \\
        --codec_config exp/codec_y/config.yaml --codec_model exp/codec_y/latest.pth --data_dir dump/raw/test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml

from espnet_kalle.audio import load_audio
from espnet_kalle.kaldi_io import read_kaldi_map, read_wav_scp
from espnet_kalle.recipe.probe_io import emit, missing_data_file
from espnet_kalle.scoring.asr_wer import ASR, WordErrors, make_asr, sum_errors, word_errors
from espnet_kalle.voice import Voice

SHIPPED = "shipped"
POINT_HEADS = ("gaussian_kl", "gaussian_mixture")  # heads with a temperature-0 frame to decode


def load_for_probe(model_dir: Optional[str] = None, lm_config: Optional[Path] = None,
                   lm_model: Optional[Path] = None, codec_config: Optional[Path] = None,
                   codec_model: Optional[Path] = None, int8: bool = True):
    """A ``KalleSynthesizer`` of a packed dir, or of an ESPnet LM checkpoint + its Flow-VAE (written to a
    temporary model dir exactly as ``pack`` writes one, without presets; ``int8`` as mini-en ships)."""
    from espnet_kalle.checkpoint import load_state_dict
    from espnet_kalle.pretrained.pack import write_model_dir
    from espnet_kalle.synthesizer import KalleSynthesizer
    from espnet_kalle.tts.load import read_train_config

    if model_dir is not None:
        return KalleSynthesizer.from_pretrained(model_dir)
    if None in (lm_config, lm_model, codec_config, codec_model):
        raise ValueError("give --model_dir, or all of --lm_config, --lm_model, --codec_config and --codec_model")
    out = Path(tempfile.mkdtemp(prefix="kalle_probe_"))
    codec_conf = yaml.safe_load(Path(codec_config).read_text(encoding="utf-8"))
    write_model_dir(out, read_train_config(lm_config), load_state_dict(lm_model, "LM model file"), codec_conf,
                    load_state_dict(codec_model, "codec model file"), name=Path(lm_model).stem,
                    extra_meta={"int8_lm": True} if int8 else None)
    return KalleSynthesizer.from_pretrained(out)


def teacher_forced_means(synth, ids: Sequence[int], z: torch.Tensor, speaker: Optional[torch.Tensor]
                         ) -> torch.Tensor:
    """The LM's temperature-0 frames [T, D] given the true history ``z`` [T, D] (``gaussian_kl``: the predicted
    means; ``gaussian_mixture``: the mean of the most probable component)."""
    lm = synth.model.lm
    with torch.inference_mode():
        hidden = lm.hidden_states(torch.tensor([list(ids)]), torch.tensor([len(ids)]),
                                  z[None].to(next(lm.parameters()).dtype), torch.tensor([z.shape[0]]),
                                  None if speaker is None else speaker[None])
        return lm.head.point(hidden)[0, : z.shape[0]].float()


PROMPTED = "prompted:"


def _fixed_voice(synth, voice: str):
    """The voice every sentence shares, or None for the per-recording ones (own, clone)."""
    if voice in ("own", "clone"):
        return None
    if voice.startswith(PROMPTED):
        from espnet_kalle.pretrained.presets import PROMPT_TEMPERATURE, PROMPT_TEXT

        seed = voice[len(PROMPTED):]
        if not seed.lstrip("-").isdigit():
            raise ValueError(f"--voice {voice}: give {PROMPTED}SEED with an integer seed")
        return synth.with_own_prompt(int(seed), PROMPT_TEXT, seed=int(seed), temperature=PROMPT_TEMPERATURE)
    return synth.voice(int(voice) if voice.lstrip("-").isdigit() else voice)


def _prompt_utterance(utt: str, all_utts: Sequence[str], speakers: Dict[str, str]) -> str:
    """The next utterance after ``utt`` (cyclically) by the same speaker (any utterance without utt2spk)."""
    start = all_utts.index(utt)
    for other in list(all_utts[start + 1:]) + list(all_utts[:start]):
        if speakers.get(other) == speakers.get(utt):
            return other
    raise ValueError(f"--voice clone: no other recording of {utt}'s speaker to prompt with")


def _recording_voice(synth, voice: str, recording: np.ndarray, prompt_wav: str, prompt_text: str):
    if voice == "clone":
        return synth.clone(prompt_wav, prompt_text)
    speaker = None
    if synth.model.speaker is not None:
        speaker = synth.model.speaker_from_wav(torch.from_numpy(recording))
    return Voice("own", speaker=speaker)


def probe(synth, data_dir: Path, asr: ASR, num_utts: int = 20, temperatures: Sequence[str] = (SHIPPED, "0"),
          voice: str = "own", seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Per system: corpus WER, mean length ratio, share of sentences cut by the frame limit, sentences."""
    if synth.model.lm.head_type not in POINT_HEADS:
        raise ValueError(f"probe_freerun decodes teacher-forced predictions: it needs one of the heads {POINT_HEADS},"
                         f" not {synth.model.lm.head_type}")
    texts, wavs = read_kaldi_map(data_dir / "text"), read_wav_scp(data_dir / "wav.scp")
    speakers = read_kaldi_map(data_dir / "utt2spk") if (data_dir / "utt2spk").is_file() else {}
    all_utts = [u for u in wavs if texts.get(u)]
    utts = all_utts[:num_utts]
    if not utts:
        raise ValueError(f"{data_dir}: no utterance has both text and audio")
    shipped = float(synth.model.generation_conf.get("temperature", 1.0))
    temps = {f"free t={shipped if t == SHIPPED else float(t):g}": shipped if t == SHIPPED else float(t)
             for t in temperatures}
    limit_frames = synth.model.generation_config().max_frames
    errors: Dict[str, List[WordErrors]] = {}
    ratios: Dict[str, List[float]] = {}
    unstopped: Dict[str, List[bool]] = {}
    generator = torch.Generator().manual_seed(seed)
    fixed = _fixed_voice(synth, voice)
    for utt in utts:
        recording = load_audio(wavs[utt], synth.sample_rate)
        seconds = recording.shape[0] / synth.sample_rate
        with torch.inference_mode():
            mu, log_sigma = (x[0].T for x in synth.codec.encode(torch.from_numpy(recording).view(1, 1, -1)))
        z = mu + log_sigma.exp() * torch.randn(mu.shape, generator=generator)
        v = fixed
        if v is None:
            prompt = _prompt_utterance(utt, all_utts, speakers) if voice == "clone" else utt
            v = _recording_voice(synth, voice, recording, wavs[prompt], texts[prompt])
        ids = [i for sentence in synth.check_text(texts[utt]) for i in sentence]
        audio = {
            "resynthesis": _decode(synth, mu)[: recording.shape[0]],  # what synth.resynthesize does, encoded once
            "teacher-forced": _decode(synth, teacher_forced_means(synth, ids, z, v.speaker)),
        }
        for name, temperature in temps.items():
            audio[name] = synth.synthesize(texts[utt], voice=v, temperature=temperature, seed=seed)
        for name, wav in audio.items():
            errors.setdefault(name, []).append(word_errors(texts[utt], asr.transcribe(wav, synth.sample_rate)))
            ratios.setdefault(name, []).append(wav.shape[0] / synth.sample_rate / seconds)
            frames = wav.shape[0] / synth.hop_length
            unstopped.setdefault(name, []).append(name.startswith("free") and frames >= limit_frames)
    return {
        name: {
            "wer": 100.0 * sum_errors(errs).wer,
            "length_ratio": float(np.mean(ratios[name])),
            "unstopped": float(np.mean(unstopped[name])),
            "sentences": len(errs),
        }
        for name, errs in errors.items()
    }


def _decode(synth, latents: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return synth.codec.decode(latents.T[None]).reshape(-1).float().numpy()


def markdown(result: Dict[str, Dict[str, float]], asr_name: str = "") -> str:
    lines = ["| system | WER % | length ratio | unstopped |", "| --- | ---: | ---: | ---: |"]
    for name, row in result.items():
        lines.append(f"| {name} | {row['wer']:.1f} | {row['length_ratio']:.2f} | {row['unstopped']:.0%} |")
    n = next(iter(result.values()))["sentences"]
    return "\n".join(lines) + f"\n\n{n} sentences" + (f"; ASR: {asr_name}" if asr_name else "") + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default=None, help="packed model dir or a registered name (e.g. mini-en)")
    parser.add_argument("--lm_config", type=Path, default=None, help="ESPnet LM config.yaml (instead of --model_dir)")
    parser.add_argument("--lm_model", type=Path, default=None, help="ESPnet LM checkpoint (.pth)")
    parser.add_argument("--codec_config", type=Path, default=None, help="Flow-VAE config.yaml of the LM's latents")
    parser.add_argument("--codec_model", type=Path, default=None, help="Flow-VAE checkpoint")
    parser.add_argument("--no_int8", action="store_true", help="checkpoints: generate with float weights")
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with text and wav.scp")
    parser.add_argument("--num_utts", type=int, default=20, help="the first N utterances of the dir")
    parser.add_argument("--temperatures", nargs="+", default=[SHIPPED, "0"],
                        help=f"free-running temperatures ('{SHIPPED}': the model's generation_conf)")
    parser.add_argument("--voice", default="own",
                        help=f"own (each recording's speaker latent), a preset, a seed, clone (another recording of the"
                             f" speaker as prompt) or {PROMPTED}SEED (the seed with a prompt it speaks itself)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (and the teacher-forced history draw)")
    parser.add_argument("--whisper", default=None, help="local Whisper weights instead of pocketsphinx")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    missing = missing_data_file(args.data_dir)
    if missing is not None:
        print(f"probe_freerun: {missing}: not found", file=sys.stderr)
        return 2
    try:
        synth = load_for_probe(args.model_dir, args.lm_config, args.lm_model, args.codec_config, args.codec_model,
                               int8=not args.no_int8)
        asr = make_asr(args.whisper)
        result = probe(synth, args.data_dir, asr, args.num_utts, args.temperatures, args.voice, args.seed)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"probe_freerun: {exc}", file=sys.stderr)
        return 2
    emit(markdown(result, asr.name), result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
