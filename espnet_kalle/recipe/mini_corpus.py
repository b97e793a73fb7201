"""Build the ``mini`` corpus: distinct WordNet sentences read by flite voices, split by sentence.

Why this shape: the recipe must train and score end to end on 2 CPU cores with nothing downloaded, so the corpus
is synthesised locally (about 3 minutes for the default with ``--nj 2``). Each sentence is read by
``--voices_per_sentence`` voices (default 1, spread round-robin), not by every voice: that gives 8x more distinct
text per minute of build time, which matters more for a TTS language model than parallel recordings.

Splits are made on sentences before voices are assigned, so no sentence is in two splits, and each split
cycles through all voices, so every voice is in dev and test (speaker-similarity scoring needs each voice there).
The test set is the first ``num_test`` sentences of a seeded shuffle of the whole source, dev the next
``num_dev``: it stays the same when only ``--num_sentences`` changes.

    python -m espnet_kalle.recipe.mini_corpus --out_dir downloads/mini --data_dir data --nj 2
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from espnet_kalle.kaldi_io import write_kaldi_map
from espnet_kalle.recipe import sentences as sent
from espnet_kalle.recipe.kaldi_dir import Utterance, write_data_dir
from espnet_kalle.recipe.voices import (
    APT_HINT,
    Voice,
    has_timings,
    missing_tools,
    parse_voices,
    synthesize,
    timings_path,
)

DEFAULT_NUM_SENTENCES = 3300
SPLITS = ("test", "dev", "train")


def split_sentences(sentences: list[str], num_test: int, num_dev: int) -> dict[str, list[tuple[int, str]]]:
    """(index, sentence) per split: test first, then dev, train the rest; the index names the sentence in ids."""
    if num_test + num_dev >= len(sentences):
        raise ValueError(f"{len(sentences)} sentences leave nothing for train after {num_test} test + {num_dev} dev")
    indexed = list(enumerate(sentences))
    return {
        "test": indexed[:num_test],
        "dev": indexed[num_test : num_test + num_dev],
        "train": indexed[num_test + num_dev :],
    }


def assign_voices(
    items: list[tuple[int, str]], voices: list[Voice], per_sentence: int = 1
) -> list[tuple[int, str, Voice]]:
    """Round-robin voices over sentences, ``per_sentence`` distinct voices each; every voice appears when
    there are enough sentences (checked by the caller)."""
    if not 1 <= per_sentence <= len(voices):
        raise ValueError(f"voices_per_sentence must be in 1..{len(voices)}")
    out = []
    for pos, (idx, text) in enumerate(items):
        for j in range(per_sentence):
            out.append((idx, text, voices[(pos * per_sentence + j) % len(voices)]))
    return out


def audio_path(wav_dir: Path, utt_id: str, voice: Voice, text: str) -> Path:
    """The file name carries a hash of voice settings and text, so a rebuild with other settings never reuses
    a stale file, while an interrupted build resumes by skipping files that exist. Files of other settings are
    left in place (switching back, e.g. from a CI slice to the full corpus, costs nothing)."""
    key = hashlib.sha1(repr((voice, text)).encode()).hexdigest()[:10]
    return wav_dir / voice.name / f"{utt_id}.{key}.wav"


def plan_corpus(
    sentences: list[str],
    voices: list[Voice],
    wav_dir: Path,
    num_test: int = 50,
    num_dev: int = 50,
    voices_per_sentence: int = 1,
) -> dict[str, list[Utterance]]:
    """Utterances per split (nothing synthesised yet)."""
    plan: dict[str, list[Utterance]] = {}
    for split, items in split_sentences(sentences, num_test, num_dev).items():
        if len(items) * voices_per_sentence < len(voices):
            raise ValueError(
                f"split {split} has {len(items)} sentences x {voices_per_sentence} voices, fewer than the "
                f"{len(voices)} voices: raise --num_{split} or --voices_per_sentence so every voice appears"
            )
        width = max(5, len(str(len(sentences) - 1)))
        plan[split] = [
            Utterance(
                utt_id=f"{voice.name}-{idx:0{width}d}",
                speaker=voice.name,
                wav=str(audio_path(wav_dir, f"{voice.name}-{idx:0{width}d}", voice, text)),
                text=text,
            )
            for idx, text, voice in assign_voices(items, voices, voices_per_sentence)
        ]
    return plan


def synthesize_all(utts: list[Utterance], voices: dict[str, Voice], nj: int, log_every: int = 500) -> int:
    """Synthesise every missing file with ``nj`` parallel engine processes; return how many were made."""
    todo = [u for u in utts if not Path(u.wav).is_file()
            or (has_timings(voices[u.speaker]) and not timings_path(u.wav).is_file())]
    for u in todo:
        Path(u.wav).parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    # Threads suffice: each job is an external flite/sox process, so the GIL is not the bottleneck.
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        futures = [pool.submit(synthesize, voices[u.speaker], u.text, u.wav) for u in todo]
        for done, fut in enumerate(as_completed(futures), 1):
            if fut.exception() is not None:
                pool.shutdown(wait=True, cancel_futures=True)  # fail fast: don't finish the queue first
                raise fut.exception()
            if done % log_every == 0 or done == len(todo):
                print(f"  synthesised {done}/{len(todo)} ({time.time() - start:.0f} s)", flush=True)
    return len(todo)


def write_phone_timings(data_dir: Path, utts: list[Utterance]) -> None:
    """``phone_timings`` beside the Kaldi files: ``utt_id phone:end ...`` (seconds) for each utterance whose voice
    gives timings (flite), sorted by id like the other files; none when no voice gives them."""
    timings = {u.utt_id: timings_path(u.wav).read_text(encoding="utf-8").strip()
               for u in utts if timings_path(u.wav).is_file()}
    target = data_dir / "phone_timings"
    if timings:
        write_kaldi_map(target, timings)
    else:
        target.unlink(missing_ok=True)


def write_provenance(out_dir: Path, voices: list[Voice], text_file: str | None) -> None:
    """Record where the text and voices come from, with the WordNet notice its licence asks copies to carry."""
    lines = ["mini corpus (espnet-kalle): synthetic speech, 16 kHz mono 16-bit PCM.", ""]
    if text_file:
        lines.append(f"Text: sentences from {text_file}.")
    else:
        lines += [
            "Text: usage examples from Princeton WordNet 3.0 (Debian package wordnet-base),",
            "normalised by espnet_kalle.recipe.sentences. WordNet 3.0 Copyright 2006 by Princeton University.",
            "All rights reserved. Licence: see WORDNET_LICENSE (the WordNet 3.0 licence).",
        ]
    lines += ["", "Voices:"] + [f"  {v.name}: {v.description}" for v in voices]
    if any(v.engine == "espeak" for v in voices):
        lines += ["", "MBROLA voices: NON-COMMERCIAL, NON-MILITARY use only (MBROLA database licence)."]
    (out_dir / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    notice = Path("/usr/share/doc/wordnet-base/copyright")
    if not text_file and notice.is_file():
        shutil.copyfile(notice, out_dir / "WORDNET_LICENSE")


def build(args: argparse.Namespace) -> dict[str, list[Utterance]]:
    """Everything ``main`` does, callable from Python."""
    voices = parse_voices(args.voices)
    missing = missing_tools(voices)
    if missing:
        raise SystemExit(
            "mini corpus: missing " + ", ".join(missing) + ". Install with:\n  "
            + "\n  ".join(APT_HINT[t] for t in missing)
        )
    out_dir = Path(args.out_dir).resolve()
    wav_dir = out_dir / "wav"
    try:
        blocks = sent.load_sentences(args.text_file, args.wordnet_dir, args.min_words, args.max_words,
                                     args.sources.split(","))
    except FileNotFoundError as e:
        raise SystemExit(f"mini corpus: {e}") from e
    pool = [t for block in blocks for t in block]
    chosen = sent.sample_sentences(blocks, args.num_sentences, args.seed)
    plan = plan_corpus(chosen, voices, wav_dir, args.num_test, args.num_dev, args.voices_per_sentence)
    utts = [u for split in SPLITS for u in plan[split]]
    print(
        f"mini corpus: {len(chosen)} sentences (of {len(pool)} distinct), {len(voices)} voices, "
        f"{len(utts)} utterances -> {wav_dir}",
        flush=True,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    made = synthesize_all(utts, {v.name: v for v in voices}, args.nj)
    write_provenance(out_dir, voices, args.text_file)
    for split in SPLITS:
        name = getattr(args, f"{split}_set")
        write_data_dir(Path(args.data_dir) / name, plan[split])
        write_phone_timings(Path(args.data_dir) / name, plan[split])
        print(f"  {args.data_dir}/{name}: {len(plan[split])} utterances", flush=True)
    print(f"mini corpus: synthesised {made}, reused {len(utts) - made}", flush=True)
    return plan


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out_dir", default="downloads/mini", help="where the WAV files go")
    p.add_argument("--data_dir", default="data", help="where the Kaldi-style split dirs go")
    p.add_argument("--num_sentences", type=int, default=DEFAULT_NUM_SENTENCES, help="distinct sentences (<=0: all)")
    p.add_argument("--num_test", type=int, default=50, help="test sentences")
    p.add_argument("--num_dev", type=int, default=50, help="dev sentences")
    p.add_argument("--voices", default="default", help="comma-separated voice names, 'default' or 'mbrola'")
    p.add_argument("--voices_per_sentence", type=int, default=1, help="how many voices read each sentence")
    p.add_argument("--seed", type=int, default=1, help="seed of the sentence shuffle")
    p.add_argument("--min_words", type=int, default=4)
    p.add_argument("--max_words", type=int, default=25)
    p.add_argument("--sources", default="examples",
                   help="WordNet sentence sources in sampling order: examples (~33k), glosses (~99k more)")
    p.add_argument("--text_file", default=None, help="one sentence per line, instead of WordNet")
    p.add_argument("--wordnet_dir", default=str(sent.WORDNET_DIR))
    p.add_argument("--nj", type=int, default=2, help="parallel synthesis jobs")
    p.add_argument("--train_set", default="train")
    p.add_argument("--dev_set", default="dev")
    p.add_argument("--test_set", default="test")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        build(args)
    except (ValueError, RuntimeError) as e:
        print(f"mini corpus: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
