"""English sentences for the synthetic ``mini`` corpus, from a freely licensed source installed by apt.

Source: the usage examples inside the glosses of Princeton WordNet 3.0, shipped as plain text by Debian's
``wordnet-base`` package (``/usr/share/wordnet/data.{noun,verb,adj,adv}``; ``apt-get install wordnet-base``).
Licence: the WordNet 3.0 licence, a permissive BSD-style licence ("permission to use, copy, modify and
distribute this software and database ... for any purpose and without fee or royalty", keeping Princeton's
copyright notice; see ``/usr/share/doc/wordnet-base/copyright``). About 48,000 hand-written example phrases in
modern English ("the oceans are teeming with life"); after normalisation about 33,000 distinct sentences of
4-25 words remain (mean 7 words), ten times what the default corpus uses, so nothing is ever downloaded.
The minimum is 4 words rather than 3: WordNet's 3-word examples are mostly noun phrases ("a black lie") that
give under a second of audio, too short for speaker-similarity scoring or prompting.
A user can also pass any UTF-8 text file with one sentence per line (``--text_file``).
"""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
WORDNET_APT = "wordnet-base"

_QUOTED = re.compile(r'"([^"]+)"')
# Kept characters after normalisation; a sentence with anything else (digits, brackets, $, %, /, quotes that
# mark a mention like `dog') is dropped rather than guessed at, so text and audio always agree.
_ALLOWED = re.compile(r"^[A-Za-z ,.'?!-]+$")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*")


def wordnet_examples(wordnet_dir: str | Path = WORDNET_DIR) -> Iterator[str]:
    """Yield the raw quoted usage examples of every WordNet synset gloss (after the '| ' separator)."""
    root = Path(wordnet_dir)
    files = [root / name for name in WORDNET_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"WordNet data not found ({', '.join(missing)}): install it with 'apt-get install {WORDNET_APT}'"
        )
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # licence header lines
                    continue
                _, sep, gloss = line.partition(" | ")
                if sep:
                    yield from _QUOTED.findall(gloss)


def text_file_lines(path: str | Path) -> Iterator[str]:
    """Yield the non-empty lines of a user-supplied sentence file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.strip()


def normalize(sentence: str, min_words: int = 4, max_words: int = 25) -> str | None:
    """Return a clean ASCII sentence (capitalised, final punctuation) or None when it should be skipped.

    Skipped: non-ASCII letters that have no plain form, digits, symbols, abbreviations (an inner '.'),
    and anything outside [min_words, max_words] words. flite and the ASR scorer then read exactly the text.
    """
    text = unicodedata.normalize("NFKD", sentence)
    text = text.encode("ascii", "ignore").decode("ascii")
    text = text.replace(";", ",").replace(":", ",")
    text = " ".join(text.split()).strip(" ,")
    if not text or not _ALLOWED.match(text):
        return None
    body = text.rstrip(".?!")
    if "." in body or "!" in body or "?" in body:  # abbreviations or several sentences
        return None
    text = re.sub(r"\s+,", ",", text)
    words = _WORD.findall(text)
    if not (min_words <= len(words) <= max_words):
        return None
    if len(words) != len(text.replace(",", " ").replace(".", " ").replace("?", " ").replace("!", " ").split()):
        return None  # stray hyphens or apostrophes that are not inside a word
    if text[-1] not in ".?!":
        text += "."
    return text[0].upper() + text[1:]


def sentence_key(sentence: str) -> str:
    """Identity used for deduplication and split-disjointness: lower-case words, punctuation ignored."""
    return " ".join(w.lower() for w in _WORD.findall(sentence))


def distinct_sentences(raw: Iterable[str], min_words: int = 4, max_words: int = 25) -> list[str]:
    """Normalise, drop rejects, keep the first sentence of each key; sorted so the result is reproducible."""
    chosen: dict[str, str] = {}
    for item in raw:
        text = normalize(item, min_words, max_words)
        if text is not None:
            chosen.setdefault(sentence_key(text), text)
    return sorted(chosen.values())


def load_sentences(
    text_file: str | Path | None = None,
    wordnet_dir: str | Path = WORDNET_DIR,
    min_words: int = 4,
    max_words: int = 25,
) -> list[str]:
    """All distinct normalised sentences of the chosen source (a text file, else WordNet), sorted."""
    raw = text_file_lines(text_file) if text_file else wordnet_examples(wordnet_dir)
    return distinct_sentences(raw, min_words, max_words)


def sample_sentences(sentences: list[str], num: int, seed: int) -> list[str]:
    """A seeded random subset of ``num`` sentences (all of them when num <= 0), in a seeded random order."""
    if num > len(sentences):
        raise ValueError(f"asked for {num} sentences but the source has only {len(sentences)} distinct ones")
    order = sorted(sentences)
    random.Random(seed).shuffle(order)
    return order if num <= 0 else order[:num]
