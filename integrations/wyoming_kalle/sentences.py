"""Sentences out of streamed text (Home Assistant sends LLM output in small pieces).

Splitting uses the synthesizer's own ``split_sentences``, so a streamed text is cut exactly where a one-shot
``Synthesize`` of the same text would be, and both give the same audio.
"""

from __future__ import annotations

import re
from typing import List

from espnet_kalle.text import split_sentences

_ENDS_SENTENCE = re.compile(r"[.!?;][\"')\]]*$")


class SentenceBuffer:
    """Accumulates text chunks and releases sentences once text after them shows they are complete."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self._text = ""

    def add(self, chunk: str) -> List[str]:
        """Complete sentences so far. The last piece is held back: more text may still extend it."""
        self._text += chunk
        pieces = split_sentences(self._text)
        if not pieces:
            return []
        closed = self._text[-1:].isspace() and _ENDS_SENTENCE.search(pieces[-1]) is not None
        if closed or (len(pieces) == 1 and len(self._text) > self.max_chars):
            self._text = ""  # the last sentence is closed too (or a run-on is longer than a request may be)
            return pieces
        if len(pieces) == 1:
            return []
        self._text = pieces[-1] + (" " if self._text[-1:].isspace() else "")
        return pieces[:-1]

    def finish(self) -> List[str]:
        """Whatever is left when the stream ends."""
        pieces, self._text = split_sentences(self._text), ""
        return pieces

    def clear(self) -> None:
        self._text = ""
