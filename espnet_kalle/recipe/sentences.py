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
A second source, for corpora larger than the examples allow (``--sources examples,glosses``): the definitions of the
same glosses ("a disposition toward schism and secession from a larger group"), about 99,000 more distinct phrases
of 4-25 words under the same rules. They come after every example in the sampling order, so a corpus that fits in
the examples, its test and dev sentences included, is the same with or without them.
A user can also pass any UTF-8 text file with one sentence per line (``--text_file``).
"""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator, Sequence

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
WORDNET_APT = "wordnet-base"

_QUOTED = re.compile(r'"([^"]+)"')
# Kept characters after normalisation; a sentence with anything else (digits, brackets, $, %, /, quotes that
# mark a mention like `dog') is dropped rather than guessed at, so text and audio always agree.
_ALLOWED = re.compile(r"^[A-Za-z ,.'?!-]+$")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*")


def _wordnet_files(wordnet_dir: str | Path) -> list[Path]:
    root = Path(wordnet_dir)
    files = [root / name for name in WORDNET_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"WordNet data not found ({', '.join(missing)}): install it with 'apt-get install {WORDNET_APT}'"
        )
    return files


def _wordnet_glosses(wordnet_dir: str | Path) -> Iterator[str]:
    """The gloss of every WordNet synset (after the '| ' separator): its definitions, then quoted examples."""
    for path in _wordnet_files(wordnet_dir):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # licence header lines
                    continue
                _, sep, gloss = line.partition(" | ")
                if sep:
                    yield gloss


def wordnet_examples(wordnet_dir: str | Path = WORDNET_DIR) -> Iterator[str]:
    """Yield the raw quoted usage examples of every WordNet synset gloss."""
    for gloss in _wordnet_glosses(wordnet_dir):
        yield from _QUOTED.findall(gloss)


def wordnet_glosses(wordnet_dir: str | Path = WORDNET_DIR) -> Iterator[str]:
    """Yield the definitions of every WordNet synset gloss (before its quoted examples), split at ';'."""
    for gloss in _wordnet_glosses(wordnet_dir):
        yield from (part.strip() for part in gloss.split('"')[0].split(";") if part.strip())


SOURCES = {"examples": wordnet_examples, "glosses": wordnet_glosses}


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
    sources: Sequence[str] = ("examples",),
) -> list[list[str]]:
    """The distinct normalised sentences of each chosen source (a text file, else the WordNet ``sources`` in
    order), each block sorted and without the sentences of the blocks before it."""
    if text_file:
        return [distinct_sentences(text_file_lines(text_file), min_words, max_words)]
    unknown = [name for name in sources if name not in SOURCES]
    if unknown or not sources:
        raise ValueError(f"unknown sentence source(s) {unknown or sources}: choose from {', '.join(SOURCES)}")
    blocks: list[list[str]] = []
    seen: set[str] = set()
    for name in sources:
        block = [t for t in distinct_sentences(SOURCES[name](wordnet_dir), min_words, max_words)
                 if sentence_key(t) not in seen]
        seen.update(sentence_key(t) for t in block)
        blocks.append(block)
    return blocks


def sample_sentences(blocks: list[list[str]], num: int, seed: int) -> list[str]:
    """The first ``num`` sentences (all when num <= 0) of the blocks, each in its own seeded random order, one
    block after the other: adding a block never changes the sentences a smaller corpus draws."""
    total = sum(len(block) for block in blocks)
    if num > total:
        raise ValueError(f"asked for {num} sentences but the source has only {total} distinct ones"
                         + ("" if len(blocks) > 1 else " (more with --sources examples,glosses)"))
    order: list[str] = []
    for i, block in enumerate(blocks):
        shuffled = sorted(block)
        random.Random(seed if i == 0 else f"{seed}/{i}").shuffle(shuffled)
        order += shuffled
    return order if num <= 0 else order[:num]
