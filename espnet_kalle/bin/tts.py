"""kalle-tts: speak text with a KALL-E model.

    kalle-tts "Hello there." -o hello.wav                      # embedded mini-en, default voice
    kalle-tts "Hello there." -o hello.wav --voice low-1         # a preset   (--list-voices shows them)
    kalle-tts "Hello there." -o hello.wav --seed 42             # a random voice, the same for the same seed
    kalle-tts "Hello there." -o hello.wav --prompt-wav me.wav --prompt-text "what I said" [--ttt]
    cat story.txt | kalle-tts - -o story.wav --stream           # text from stdin, written while generated

Exit codes: 0 ok, 2 bad usage or input (text, voice, prompt, audio), 3 model not found or unreadable.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

EXIT_USAGE, EXIT_MODEL = 2, 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kalle-tts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="?", help='text to speak, or "-" to read UTF-8 text from stdin')
    p.add_argument("-o", "--output", type=Path, help="output WAV file (16-bit PCM)")
    p.add_argument("--model", default="mini-en", help="embedded model name or a model dir (default: mini-en)")
    voice = p.add_mutually_exclusive_group()
    voice.add_argument("--voice", help="preset voice name or a saved .voice.pt file")
    voice.add_argument("--seed", type=int, help="random voice drawn from this seed")
    p.add_argument("--prompt-wav", type=Path, help="clone the voice of this recording")
    p.add_argument("--prompt-text", help="transcript of --prompt-wav")
    p.add_argument("--ttt", action="store_true", help="adapt the model to the prompt (test-time training)")
    p.add_argument("--ttt-steps", type=int, default=50)
    p.add_argument("--speaker-only", action="store_true",
                   help="clone from the prompt's speaker latent alone (the paper), without continuing the prompt")
    p.add_argument("--save-voice", type=Path, help="save the cloned/adapted voice to this file")
    p.add_argument("--temperature", type=float, default=None, help="scale of the sampling noise (default: model's)")
    p.add_argument("--speed", type=float, default=1.0, help="speaking rate factor (0.25-4)")
    p.add_argument("--sampling-seed", type=int, default=0, help="seed of the sampling noise")
    p.add_argument("--stream", action="store_true", help="write audio to the file as it is generated")
    p.add_argument("--list-voices", action="store_true", help="list preset voices and exit")
    p.add_argument("--device", default="cpu")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="generate with int8 LM weights (faster on CPU; default: what the model dir says)")
    p.add_argument("--quiet", action="store_true")
    return p


def read_text(arg: Optional[str]) -> str:
    if arg == "-":
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"stdin is not UTF-8 text (byte {exc.start}): convert it first, e.g. with iconv") from exc
    return arg or ""


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="kalle-tts: %(message)s")
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))

    from espnet_kalle.synthesizer import KalleSynthesizer

    try:
        synth = KalleSynthesizer.from_pretrained(args.model, device=args.device, int8=args.int8)
    except (FileNotFoundError, ValueError) as exc:
        print(f"kalle-tts: cannot load model: {exc}", file=sys.stderr)
        return EXIT_MODEL
    if args.list_voices:
        for name, voice in synth.voices.items():
            mark = " (default)" if name == synth.default_voice else ""
            print(f"{name}{mark}\t{voice.description}")
        return 0
    try:
        return speak(args, synth, say)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"kalle-tts: {message}", file=sys.stderr)
        return EXIT_USAGE


def speak(args, synth, say) -> int:
    from tqdm import tqdm

    from espnet_kalle.wav_writer import StreamingWavWriter

    if args.output is None:
        raise ValueError("give an output file with -o OUT.wav")
    text = read_text(args.text)
    if bool(args.prompt_wav) != bool(args.prompt_text):
        raise ValueError("--prompt-wav and --prompt-text go together")
    if args.ttt and not args.prompt_wav:
        raise ValueError("--ttt needs --prompt-wav and --prompt-text")
    if args.speaker_only and not args.prompt_wav:
        raise ValueError("--speaker-only needs --prompt-wav and --prompt-text")
    if args.prompt_wav:
        if args.ttt:
            say(f"adapting to {args.prompt_wav} ({args.ttt_steps} TTT steps)...")
            voice = synth.adapt(args.prompt_wav, args.prompt_text, steps=args.ttt_steps,
                                continuation=not args.speaker_only)
        else:
            voice = synth.clone(args.prompt_wav, args.prompt_text, continuation=not args.speaker_only)
        if args.save_voice:
            voice.save(args.save_voice)
            say(f"saved voice to {args.save_voice}")
    else:
        voice = synth.voice(args.seed if args.seed is not None else args.voice)
    synth.check_text(text)  # clear errors before any audio is written
    sentences = synth.sentences(text)
    start = time.perf_counter()
    n_samples = 0
    progress = tqdm(total=len(sentences), unit="sentence", disable=args.quiet or len(sentences) < 3, file=sys.stderr)
    with StreamingWavWriter(args.output, synth.sample_rate, flush_every_write=args.stream) as writer:
        for index, sentence in enumerate(sentences):
            seed = args.sampling_seed + index
            for chunk in synth.stream(sentence, voice, args.temperature, args.speed, seed,
                                      pause_frames=0):
                writer.write(chunk)
                n_samples += chunk.shape[0]
            if index + 1 < len(sentences):
                silence = np.zeros(synth.hop_length, dtype=np.float32)
                writer.write(silence)
                n_samples += silence.shape[0]
            progress.update(1)
    progress.close()
    elapsed = time.perf_counter() - start
    seconds = n_samples / synth.sample_rate
    rtf = elapsed / seconds if seconds else float("nan")
    say(f"wrote {args.output}: {seconds:.2f} s of audio in {elapsed:.2f} s (RTF {rtf:.3f}), voice {voice.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
