"""Kaldi-style data dirs for the real corpora a user downloads: LJSpeech, LibriTTS-R, VCTK.

Nothing is downloaded or converted here: ``wav.scp`` points at the corpus's own files (22.05/24/48 kHz WAV or
FLAC) and the recipe's format stage resamples to 16 kHz. A missing corpus stops with the URL to get it from.
Splits: LibriTTS-R has standard subsets (train-clean-100/360, dev-clean, test-clean); LJSpeech follows ESPnet's
ljspeech recipe (the last 500 utterances: 250 dev, 250 test); VCTK has none, so each speaker gets a few held-out
utterances (see ``held_out_by_speaker``), chosen so that no sentence is in two splits.

    python -m espnet_kalle.recipe.corpora --dataset ljspeech --corpus_dir /data/LJSpeech-1.1 --data_dir data
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable

from espnet_kalle.recipe.kaldi_dir import Utterance, write_data_dir
from espnet_kalle.recipe.sentences import sentence_key

URLS = {
    "ljspeech": "https://keithito.com/LJ-Speech-Dataset/ (LJSpeech-1.1.tar.bz2, 2.6 GB)",
    "libritts_r": "https://www.openslr.org/141/ (e.g. train_clean_100.tar.gz, dev_clean.tar.gz, test_clean.tar.gz)",
    "vctk": "https://datashare.ed.ac.uk/handle/10283/3443 (VCTK-Corpus-0.92.zip, 11 GB)",
}
Splits = dict[str, list[Utterance]]


class CorpusNotFound(Exception):
    """The corpus (or a needed part of it) is not where the user said; the message says where to get it."""


def _missing(dataset: str, what: str) -> CorpusNotFound:
    return CorpusNotFound(
        f"{dataset}: {what}.\nDownload it yourself from {URLS[dataset]}, unpack it, and pass --corpus_dir."
    )


def _find_root(corpus_dir: Path, dataset: str, marker: str, names: tuple[str, ...]) -> Path:
    """Accept either the corpus dir itself or its parent (``/data`` for ``/data/LJSpeech-1.1``)."""
    for cand in [corpus_dir, *(corpus_dir / n for n in names)]:
        if (cand / marker).exists():
            return cand
    raise _missing(dataset, f"no {marker} under {corpus_dir} (looked for {', '.join(names)} too)")


# ---------------------------------------------------------------- LJSpeech
def prepare_ljspeech(corpus_dir: Path, num_dev: int = 250, num_test: int = 250) -> Splits:
    """LJSpeech-1.1: metadata.csv ("LJ001-0001|raw text|normalized text") and wavs/LJ001-0001.wav, one speaker."""
    root = _find_root(corpus_dir, "ljspeech", "metadata.csv", ("LJSpeech-1.1",))
    utts = []
    with open(root / "metadata.csv", encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("|")
            if len(fields) < 2:
                continue
            utt_id = fields[0]
            text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
            wav = root / "wavs" / f"{utt_id}.wav"
            if wav.is_file():
                utts.append(Utterance(utt_id, "LJ", str(wav.resolve()), " ".join(text.split())))
    if len(utts) <= num_dev + num_test:
        raise _missing("ljspeech", f"only {len(utts)} utterances with audio found in {root}")
    utts.sort(key=lambda u: u.utt_id)
    held = len(utts) - num_dev - num_test
    return {"train": utts[:held], "dev": utts[held : held + num_dev], "test": utts[held + num_dev :]}


# ---------------------------------------------------------------- LibriTTS-R
def prepare_libritts_r(
    corpus_dir: Path,
    train_subsets: tuple[str, ...] = ("train-clean-100", "train-clean-360"),
    dev_subsets: tuple[str, ...] = ("dev-clean",),
    test_subsets: tuple[str, ...] = ("test-clean",),
) -> Splits:
    """LibriTTS_R/<subset>/<spk>/<chapter>/<spk>_<chapter>_<para>_<sent>.wav + .normalized.txt.

    Utterance ids become "<spk>-<chapter>-<para>-<sent>" (as in LibriSpeech): speaker ids have different
    lengths ("19", "190"), and only "-" after the speaker keeps Kaldi's sort order consistent.
    """
    marker = (*test_subsets, *dev_subsets, *train_subsets)[0]
    root = _find_root(corpus_dir, "libritts_r", marker, ("LibriTTS_R",))
    out: Splits = {}
    for split, subsets in (("train", train_subsets), ("dev", dev_subsets), ("test", test_subsets)):
        absent = [s for s in subsets if not (root / s).is_dir()]
        if absent:
            raise _missing("libritts_r", f"subset(s) {', '.join(absent)} not found in {root}")
        out[split] = [u for s in subsets for u in _libritts_subset(root / s)]
        if not out[split]:
            raise _missing("libritts_r", f"no utterances with .normalized.txt in {', '.join(subsets)}")
    return out


def _libritts_subset(subset_dir: Path) -> list[Utterance]:
    utts = []
    for wav in sorted(subset_dir.glob("*/*/*.wav")):
        txt = wav.with_suffix(".normalized.txt")
        if not txt.is_file():
            continue
        speaker = wav.parent.parent.name
        text = " ".join(txt.read_text(encoding="utf-8").split())
        if text:
            utts.append(Utterance(wav.stem.replace("_", "-"), speaker, str(wav.resolve()), text))
    return utts


# ---------------------------------------------------------------- VCTK
def prepare_vctk(
    corpus_dir: Path, mic: str = "mic1", num_dev: int = 2, num_test: int = 2, seed: int = 1
) -> Splits:
    """VCTK 0.92: txt/<spk>/<spk>_<n>.txt and wav48_silence_trimmed/<spk>/<spk>_<n>_<mic>.flac.

    Falls back to the 0.80 layout (wav48/<spk>/<spk>_<n>.wav). Utterances without text (all of p315) or without
    audio for ``mic`` are skipped. Ids stay VCTK's own ("p225_001"): all speaker ids sort consistently.
    """
    root = _find_root(corpus_dir, "vctk", "txt", ("VCTK-Corpus-0.92", "VCTK-Corpus"))
    utts = []
    for txt in sorted((root / "txt").glob("*/*.txt")):
        speaker, utt_id = txt.parent.name, txt.stem
        wav = root / "wav48_silence_trimmed" / speaker / f"{utt_id}_{mic}.flac"
        if not wav.is_file():
            wav = root / "wav48" / speaker / f"{utt_id}.wav"
        text = " ".join(txt.read_text(encoding="utf-8", errors="replace").split())
        if wav.is_file() and text:
            utts.append(Utterance(utt_id, speaker, str(wav.resolve()), text))
    if not utts:
        raise _missing("vctk", f"no utterance with both txt/ and audio ({mic}) under {root}")
    return held_out_by_speaker(utts, num_dev, num_test, seed)


def held_out_by_speaker(utts: list[Utterance], num_dev: int, num_test: int, seed: int = 1) -> Splits:
    """Per speaker, hold out ``num_test`` + ``num_dev`` utterances whose sentence only that speaker reads.

    Why: every speaker should be in test (speaker similarity, cloning), and no sentence may be in two splits.
    VCTK's shared passages (rainbow passage, elicitation paragraph) are read by everyone, so they are never
    held out and stay in train. The pick is a seeded hash order: stable across machines and Python versions.
    """
    readers = {key: len(spks) for key, spks in _speakers_by_key(utts).items()}
    by_spk: dict[str, list[Utterance]] = defaultdict(list)
    for u in utts:
        by_spk[u.speaker].append(u)
    test_keys: set[str] = set()
    dev_keys: set[str] = set()
    for spk in sorted(by_spk):
        unique = sorted(
            (u for u in by_spk[spk] if readers[sentence_key(u.text)] == 1),
            key=lambda u: hashlib.sha1(f"{seed}|{u.utt_id}".encode()).hexdigest(),
        )
        keys = list(dict.fromkeys(sentence_key(u.text) for u in unique))
        test_keys.update(keys[:num_test])
        dev_keys.update(keys[num_test : num_test + num_dev])
    out: Splits = {"train": [], "dev": [], "test": []}
    for u in utts:
        key = sentence_key(u.text)
        out["test" if key in test_keys else "dev" if key in dev_keys else "train"].append(u)
    return out


def _speakers_by_key(utts: list[Utterance]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for u in utts:
        out[sentence_key(u.text)].add(u.speaker)
    return out


# ---------------------------------------------------------------- CLI
PREPARERS: dict[str, Callable[..., Splits]] = {
    "ljspeech": prepare_ljspeech,
    "libritts_r": prepare_libritts_r,
    "vctk": prepare_vctk,
}


def prepare(
    dataset: str, corpus_dir: str | Path | None, data_dir: str | Path, names: dict[str, str], **options
) -> Splits:
    """Run one preparer and write its splits as data/<name>; raises CorpusNotFound with the download URL."""
    if dataset not in PREPARERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(PREPARERS)}")
    if not corpus_dir:
        raise _missing(dataset, "no --corpus_dir given")
    path = Path(corpus_dir)
    if not path.is_dir():
        raise _missing(dataset, f"corpus dir {path} does not exist")
    splits = PREPARERS[dataset](path, **options)
    for split, utts in splits.items():
        write_data_dir(Path(data_dir) / names[split], utts)
        print(f"{dataset}: {Path(data_dir) / names[split]}: {len(utts)} utterances", flush=True)
    return splits


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted(PREPARERS))
    p.add_argument("--corpus_dir", default=None, help="the unpacked corpus (or the dir that contains it)")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--train_set", default="train")
    p.add_argument("--dev_set", default="dev")
    p.add_argument("--test_set", default="test")
    p.add_argument(
        "--libritts_train_subsets",
        default="train-clean-100,train-clean-360",
        help="comma-separated LibriTTS-R subsets for train (add train-other-500 for all 585 h)",
    )
    p.add_argument("--vctk_mic", default="mic1", choices=("mic1", "mic2"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    options: dict = {}
    if args.dataset == "libritts_r":
        options["train_subsets"] = tuple(s for s in args.libritts_train_subsets.split(",") if s)
    elif args.dataset == "vctk":
        options["mic"] = args.vctk_mic
    names = {"train": args.train_set, "dev": args.dev_set, "test": args.test_set}
    try:
        prepare(args.dataset, args.corpus_dir, args.data_dir, names, **options)
    except CorpusNotFound as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
