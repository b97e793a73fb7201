"""Does test-time training help a voice the model never heard? Clone vs TTT on held-out recordings.

For each prompt (a recording of a speaker outside the training data and its transcript), synthesize the same
sentences with the cloned voice (the prompt's speaker latent) and with the TTT-adapted voice, and measure the
speaker similarity (resemblyzer cosine) of every output to the prompt recording. Writes a markdown table.

    python -m espnet_kalle.recipe.heldout --model_dir DIR --prompt a.wav "transcript of a" [--prompt ...] \
        --text_file dump/raw/test/text --num_sentences 8 --out_dir exp/.../heldout [--ttt_steps 50]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import soundfile as sf

from espnet_kalle.audio import load_audio
from espnet_kalle.kaldi_io import read_kaldi_map


def read_sentences(text_file: Path, count: int) -> List[str]:
    """The first ``count`` transcripts of a Kaldi ``text`` file (utt-id, then the text)."""
    sentences = [text for text in read_kaldi_map(text_file).values() if text]
    if not sentences:
        raise ValueError(f"{text_file} has no transcripts")
    return sentences[:count]


def evaluate(model_dir: str, prompts: Sequence[Sequence[str]], sentences: Sequence[str], out_dir: Path,
             ttt_steps: int = 50, n_samples: int = 200, learning_rate: float = 1e-4, seed: int = 0) -> Dict:
    from espnet_kalle.scoring.speaker_sim import SpeakerEncoder, cosine
    from espnet_kalle.synthesizer import KalleSynthesizer

    synth = KalleSynthesizer.from_pretrained(model_dir)
    encoder = SpeakerEncoder()
    results: Dict[str, Dict[str, float]] = {}
    for wav_path, text in prompts:
        name = Path(wav_path).stem
        target = encoder.embed(load_audio(wav_path, 16000), 16000)
        voices = {
            "clone": synth.clone(wav_path, text, name=f"{name}-clone", seed=seed),
            "ttt": synth.adapt(wav_path, text, steps=ttt_steps, n_samples=n_samples, learning_rate=learning_rate,
                               name=f"{name}-ttt", seed=seed),
        }
        results[name] = {}
        for system, voice in voices.items():
            sims = []
            for i, sentence in enumerate(sentences):
                wav = synth.synthesize(sentence, voice=voice, seed=seed + i)
                path = out_dir / system / f"{name}_{i:02d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wav, synth.sample_rate)
                sims.append(cosine(encoder.embed(wav, synth.sample_rate), target))
            results[name][system] = float(np.mean(sims))
    return results


def markdown(results: Dict[str, Dict[str, float]], ttt_steps: int, n_sentences: int) -> str:
    lines = [f"# Held-out voices: clone vs test-time training ({ttt_steps} steps), {n_sentences} sentences each",
             "", "SIM = mean resemblyzer cosine of the outputs to the prompt recording.", "",
             "| prompt | SIM clone | SIM TTT | gain |", "| --- | ---: | ---: | ---: |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['clone']:.3f} | {r['ttt']:.3f} | {r['ttt'] - r['clone']:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--prompt", nargs=2, action="append", metavar=("WAV", "TEXT"), required=True)
    parser.add_argument("--text_file", type=Path, required=True)
    parser.add_argument("--num_sentences", type=int, default=8)
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--ttt_steps", type=int, default=50)
    parser.add_argument("--ttt_samples", type=int, default=200)
    parser.add_argument("--ttt_learning_rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sentences = read_sentences(args.text_file, args.num_sentences)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = evaluate(args.model_dir, args.prompt, sentences, args.out_dir, args.ttt_steps, args.ttt_samples,
                       args.ttt_learning_rate, args.seed)
    (args.out_dir / "summary.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    report = markdown(results, args.ttt_steps, len(sentences))
    (args.out_dir / "RESULTS.md").write_text(report, encoding="utf-8")
    print(report, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
