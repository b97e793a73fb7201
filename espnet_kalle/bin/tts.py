"""kalle-tts: speak text with a KALL-E model.

    kalle-tts "Hello there." -o hello.wav                      # embedded mini-en, default voice
    kalle-tts "Hello there." -o hello.wav --voice low-1         # a preset   (--list-voices shows them)
    kalle-tts "Hello there." -o hello.wav --seed 42             # a random voice, the same for the same seed
    kalle-tts "Hello there." -o hello.wav --prompt-wav me.wav --prompt-text "what I said" [--ttt]
    cat story.txt | kalle-tts - -o story.wav --stream           # text from stdin, written while generated

Exit codes: 0 ok, 2 bad input (text, voice, prompt, audio, an option, the output path), 3 model missing or
unreadable; a failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

from espnet_kalle.bin.cli import ArgumentParser, check_device, check_output_file, run_main
from espnet_kalle.errors import InputError

PROG = "kalle-tts"
TTT_STEPS = 50


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="?", help='text to speak, or "-" to read UTF-8 text from stdin')
    p.add_argument("-o", "--output", type=Path, help="output WAV file (16-bit PCM)")
    p.add_argument("--model", default="mini-en", help="embedded model name or a model dir (default: mini-en)")
    voice = p.add_mutually_exclusive_group()
    voice.add_argument("--voice", help="preset voice name or a saved .voice.pt file")
    voice.add_argument("--seed", type=int, help="random voice drawn from this seed (the voice, not the sampling)")
    p.add_argument("--prompt-wav", type=Path, help="clone the voice of this recording")
    p.add_argument("--prompt-text", help="transcript of --prompt-wav")
    p.add_argument("--ttt", action="store_true", help="adapt the model to the prompt (test-time training)")
    p.add_argument("--ttt-steps", type=int, default=TTT_STEPS, help=f"test-time training steps (default {TTT_STEPS})")
    p.add_argument("--speaker-only", action="store_true",
                   help="clone from the prompt's speaker latent alone (the paper), without continuing the prompt")
    p.add_argument("--save-voice", type=Path, help="save the cloned/adapted voice to this file")
    p.add_argument("--temperature", type=float, default=None, help="scale of the sampling noise (default: model's)")
    p.add_argument("--speed", type=float, default=1.0, help="speaking rate factor (0.25-4)")
    p.add_argument("--sampling-seed", type=int, default=0, help="seed of the sampling noise (default 0)")
    p.add_argument("--stream", action="store_true", help="write audio to the file as it is generated")
    p.add_argument("--list-voices", action="store_true", help="list preset voices and exit")
    p.add_argument("--device", default="cpu", help="torch device to run the model on (cpu, cuda, cuda:1)")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="generate with int8 LM weights (faster on CPU; default: what the model dir says)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def read_text(arg: Optional[str]) -> str:
    if arg == "-":
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin is not UTF-8 text (byte {exc.start}): convert it first, e.g. with iconv") from exc
    return arg or ""


def main(argv: Optional[List[str]] = None) -> int:
    """Exit codes: 0 ok, 2 bad input, 3 model missing or unreadable (``espnet_kalle.bin.cli``)."""
    return run_main(PROG, lambda: _run(argv))


def _run(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    text = None if args.list_voices else check_args(args)  # everything checkable before the model loads

    from espnet_kalle.synthesizer import KalleSynthesizer

    synth = KalleSynthesizer.from_pretrained(args.model, device=args.device, int8=args.int8)
    if args.list_voices:
        for name, voice in synth.voices.items():
            mark = " (default)" if name == synth.default_voice else ""
            print(f"{name}{mark}\t{voice.description}")
        return 0
    return speak(args, synth, text, say)


def check_args(args: argparse.Namespace) -> str:
    """The text to speak, once every option that needs no model is valid (``InputError`` otherwise)."""
    check_device(args.device, args.int8)
    if args.output is None:
        raise InputError("give an output file with -o OUT.wav")
    check_output_file(args.output)
    if args.save_voice is not None:
        check_output_file(args.save_voice, "--save-voice")
    if bool(args.prompt_wav) != bool(args.prompt_text):
        raise InputError("--prompt-wav and --prompt-text go together")
    if args.prompt_wav is not None and not args.prompt_wav.is_file():
        raise InputError(f"--prompt-wav {args.prompt_wav}: no such file")
    if args.ttt and not args.prompt_wav:
        raise InputError("--ttt needs --prompt-wav and --prompt-text")
    if args.speaker_only and not args.prompt_wav:
        raise InputError("--speaker-only needs --prompt-wav and --prompt-text")
    if args.save_voice is not None and not args.prompt_wav:
        raise InputError("--save-voice needs --prompt-wav and --prompt-text (it saves the cloned voice)")
    if args.ttt_steps < 1:
        raise InputError("--ttt-steps must be >= 1")
    if not 0.25 <= args.speed <= 4.0:
        raise InputError("--speed must be within [0.25, 4]")
    if args.temperature is not None and args.temperature < 0:
        raise InputError("--temperature must be >= 0")
    text = read_text(args.text)
    if not text.strip():
        raise InputError("empty text: nothing to synthesize")
    return text


def speak(args: argparse.Namespace, synth, text: str, say) -> int:
    import soundfile as sf
    from tqdm import tqdm

    from espnet_kalle.wav_writer import StreamingWavWriter

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
    try:
        with StreamingWavWriter(args.output, synth.sample_rate, flush_every_write=args.stream) as writer:
            for index, sentence in enumerate(sentences):  # one call per sentence, for the progress bar
                for chunk in synth.stream(sentence, voice, args.temperature, args.speed, args.sampling_seed,
                                          first_sentence=index):
                    writer.write(chunk)
                    n_samples += chunk.shape[0]
                progress.update(1)
    except (OSError, sf.LibsndfileError) as error:  # the disk filled, the file went away
        raise InputError(f"cannot write {args.output}: {error}") from error
    progress.close()
    elapsed = time.perf_counter() - start
    seconds = n_samples / synth.sample_rate
    rtf = elapsed / seconds if seconds else float("nan")
    say(f"wrote {args.output}: {seconds:.2f} s of audio in {elapsed:.2f} s (RTF {rtf:.3f}), voice {voice.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
