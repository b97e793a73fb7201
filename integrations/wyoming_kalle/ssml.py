"""SSML requests (``text_format: ssml``) -> the words to say and the pauses between them.

KALL-E reads plain text; markup spoken as text would be read out letter by letter, so every tag is removed here
and only what SSML 1.1 says to speak is kept: element text, ``<sub alias>`` instead of its content, ``<audio>``'s
fallback content, ``<say-as interpret-as="characters">`` spelled out. ``<break>`` becomes silence of its ``time``,
or of its ``strength`` (SSML leaves those durations to the engine; the table below is Azure's documented one), and
``<p>``/``<s>`` end a sentence. Other elements (``prosody``, ``emphasis``, ``voice``, ...) keep their text and lose
their effect. Parsing goes through defusedxml: entity tricks and DTDs are refused, not expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, List, Union
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_BREAK_SECONDS = 10.0  # one break; longer ones are cut to this (a request must not hold a worker for minutes)
BREAK_STRENGTH_SECONDS = {"none": 0.0, "x-weak": 0.25, "weak": 0.5, "medium": 0.75, "strong": 1.0, "x-strong": 1.25}
_TIME = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*")
_SKIPPED = {"desc", "mark", "meta", "metadata", "lexicon", "lookup"}  # never spoken
_SENTENCE = {"p", "s", "paragraph", "sentence"}
_SENTENCE_END = "\x00"  # cannot occur in XML text, so it marks the end of a <p>/<s> unambiguously


class SsmlError(ValueError):
    """Markup that is not well-formed SSML, or a break whose duration cannot be read."""


@dataclass(frozen=True)
class Pause:
    seconds: float


Piece = Union[str, Pause]


def parse_ssml(markup: str) -> List[Piece]:
    """Text and pauses in order: consecutive text is joined, consecutive pauses are summed, blank text dropped.

    A fragment without a ``<speak>`` root (``Hello <break time="1s"/> there``) is read as if it had one.
    """
    body = markup.strip()
    if not re.match(r"(<\?xml[^>]*\?>\s*)?<(\w+:)?speak[\s>/]", body):
        body = f"<speak>{body}</speak>"
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException) as err:
        raise SsmlError(f"not well-formed SSML: {err}") from err
    return _merge(_walk(root))


def _tag(element: Element) -> str:
    return element.tag.rsplit("}", 1)[-1].lower() if isinstance(element.tag, str) else ""


def _walk(element: Element) -> Iterator[Piece]:
    tag = _tag(element)
    if tag == "break":
        yield Pause(_break_seconds(element))
    elif tag == "sub" and element.get("alias") is not None:
        yield element.get("alias", "")
    elif tag == "say-as" and element.get("interpret-as", "").lower() in ("characters", "spell-out"):
        yield " ".join("".join(element.itertext()).replace(" ", ""))
    elif tag not in _SKIPPED:
        yield element.text or ""
        for child in element:
            yield from _walk(child)
            yield child.tail or ""
        if tag in _SENTENCE:
            yield _SENTENCE_END  # a paragraph or sentence ends here even without punctuation
    # a skipped element's tail is yielded by its parent


def _break_seconds(element: Element) -> float:
    time = element.get("time")
    if time is not None:
        match = _TIME.fullmatch(time)
        if match is None:
            raise SsmlError(f"<break time={time!r}>: use seconds or milliseconds, like 1.5s or 500ms")
        seconds = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
        return min(seconds, MAX_BREAK_SECONDS)
    strength = element.get("strength", "medium").lower()
    if strength not in BREAK_STRENGTH_SECONDS:
        raise SsmlError(f"<break strength={strength!r}>: use one of {', '.join(BREAK_STRENGTH_SECONDS)}")
    return BREAK_STRENGTH_SECONDS[strength]


def _merge(pieces: Iterator[Piece]) -> List[Piece]:
    merged: List[Piece] = []
    text = ""
    for piece in pieces:
        if isinstance(piece, str):
            text += piece
            continue
        if text.strip():
            merged.append(_clean(text))
        text = ""
        if piece.seconds <= 0:
            continue
        if merged and isinstance(merged[-1], Pause):
            merged[-1] = Pause(min(merged[-1].seconds + piece.seconds, MAX_BREAK_SECONDS))
        else:
            merged.append(piece)
    if text.strip():
        merged.append(_clean(text))
    return merged


def _clean(text: str) -> str:
    """Whitespace as the text normalizer expects it; a sentence end from ``<p>``/``<s>`` becomes a full stop
    unless punctuation is already there."""
    lines = [" ".join(line.split()) for line in text.split(_SENTENCE_END)]
    lines = [line for line in lines if line]
    return " ".join(line if line[-1] in ".!?;:," or i == len(lines) - 1 else line + "." for i, line in
                    enumerate(lines))
