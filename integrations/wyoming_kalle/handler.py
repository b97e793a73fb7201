"""One event handler per client connection.

Protocol as Home Assistant uses it (wyoming >= 1.7):
- ``Describe`` -> ``Info``, answered at once: inference never runs on the event loop (see ``synthesis``).
- ``Synthesize`` -> ``AudioStart``, ``AudioChunk``... (sent as frames are generated), ``AudioStop``.
- ``SynthesizeStart``, ``SynthesizeChunk``..., [compatibility ``Synthesize``, ignored], ``SynthesizeStop`` ->
  per sentence ``AudioStart``/``AudioChunk``.../``AudioStop`` as soon as the sentence is complete, then
  ``SynthesizeStopped``. Every stream is 16 kHz 16-bit mono (HA builds its WAV from the first ``AudioStart``).
- ``text_format: ssml`` (on ``Synthesize`` or ``SynthesizeStart``): the markup is parsed (``ssml``), never spoken;
  ``<break>`` is silence. An SSML stream is spoken at ``SynthesizeStop``, once its markup is complete.

A request that fails gets an ``Error(text, code)`` and still ends the way the client waits for (``AudioStop`` for
``Synthesize``, ``SynthesizeStopped`` for a stream): Home Assistant ignores ``Error`` and would otherwise wait
forever. The connection stays open. Codes: malformed-event, empty-text, text-too-long, unknown-voice,
unknown-speaker, unsupported-text-format, malformed-ssml, unspeakable-text, busy, synthesis-failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, TypeVar

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeTextFormat,
)

from espnet_kalle.text import TextError
from espnet_kalle.voice import Voice

from .audio import CHANNELS, WIDTH, PcmChunker, to_pcm16
from .sentences import SentenceBuffer
from .ssml import Pause, Piece, SsmlError, parse_ssml
from .synthesis import ServerBusy, SynthesisPool
from .voices import UnknownSpeaker, UnknownVoice, VoiceBook
from .wire import MalformedEvent, read_event

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class HandlerSettings:
    samples_per_chunk: Optional[int] = None  # None: one chunk per generated 80 ms frame
    max_text_chars: int = 2000
    streaming: bool = True
    max_malformed: int = 8  # consecutive undecodable events before we stop talking to a peer

    @property
    def max_event_bytes(self) -> int:
        """Largest data block or payload read from a client: room for max_text_chars of UTF-8 text plus JSON."""
        return max(64 * 1024, 8 * self.max_text_chars)


class RequestError(Exception):
    """A request we answer with ``Error``; the connection carries on."""

    def __init__(self, text: str, code: str):
        super().__init__(text)
        self.code = code


@dataclass
class _Stream:
    """State of one SynthesizeStart..SynthesizeStop session; ``voice`` is None when its start failed.

    Plain text is spoken sentence by sentence as it arrives; SSML (``markup`` not None) is collected until the stop.
    """

    voice: Optional[Voice]
    sentences: SentenceBuffer
    index: int = 0
    markup: Optional[str] = None


def _is_ssml(text_format: Any) -> bool:
    """``text_format`` of a request: None or "text" is plain text, "ssml" is SSML; anything else is refused."""
    if text_format is None or text_format == SynthesizeTextFormat.TEXT:
        return False
    if text_format == SynthesizeTextFormat.SSML:
        return True
    raise RequestError(f"text_format {text_format!r} is not supported; use 'text' or 'ssml'",
                       "unsupported-text-format")


def _parse(parser: Callable[[Event], T], event: Event) -> T:
    try:
        parsed = parser(event)
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise RequestError(f"malformed {event.type} event: {err!r}", "malformed-event") from err
    text = getattr(parsed, "text", "")
    if not isinstance(text, str):
        raise RequestError(f"malformed {event.type} event: 'text' must be a string", "malformed-event")
    return parsed


class KalleEventHandler(AsyncEventHandler):
    def __init__(self, info: Info, book: VoiceBook, pool: SynthesisPool, settings: HandlerSettings,
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.info_event = info.event()
        self.book = book
        self.pool = pool
        self.settings = settings
        self._stream: Optional[_Stream] = None
        self._audio_open = False  # AudioStart sent, AudioStop not yet

    # ------------------------------------------------------------------ connection
    async def run(self) -> None:
        """Like the base class, but a bad event gets an Error instead of silently dropping the connection.

        The base class's ``stop()`` feeds the reader EOF, which ends this loop: no private flag is needed.
        """
        strikes = 0
        try:
            while True:
                try:
                    event = await read_event(self.reader, self.settings.max_event_bytes)
                except MalformedEvent as err:
                    strikes += 1
                    await self._send_error(RequestError(str(err), "malformed-event"))
                    if not err.recoverable or strikes >= self.settings.max_malformed:
                        _LOGGER.debug("closing a connection that does not speak Wyoming: %s", err)
                        break
                    continue
                if event is None:
                    break
                strikes = 0
                if not await self.handle_event(event):
                    break
        except OSError as err:  # the client went away while we wrote; leaving the job cancels its synthesis
            _LOGGER.debug("client disconnected: %r", err)
        finally:
            await self.disconnect()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.info_event)
            return True
        if Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
            return True
        try:
            if Synthesize.is_type(event.type):
                if self._stream is not None:
                    return True  # the compatibility copy of a stream's text: speaking it would duplicate audio
                await self._synthesize(_parse(Synthesize.from_event, event))
            elif SynthesizeStart.is_type(event.type) or SynthesizeChunk.is_type(event.type) or \
                    SynthesizeStop.is_type(event.type):
                if self.settings.streaming:
                    await self._handle_stream_event(event)
            else:
                _LOGGER.debug("ignoring event %s", event.type)
        except RequestError as err:
            await self._send_error(err)
        return True

    # ------------------------------------------------------------------ requests
    async def _synthesize(self, request: Synthesize) -> None:
        try:
            voice = self._voice(request.voice)
            if _is_ssml(request.text_format):
                await self._speak_pieces(self._parse_ssml(request.text), voice)
            else:
                await self._speak(self._check_text(request.text), voice, index=0)
        except RequestError as err:
            await self._send_error(err)
        self._audio_open = False
        await self.write_event(AudioStop().event())

    async def _handle_stream_event(self, event: Event) -> None:
        if SynthesizeStart.is_type(event.type):
            start = _parse(SynthesizeStart.from_event, event)
            self._stream = _Stream(None, SentenceBuffer(self.settings.max_text_chars))
            # On error the stream stays open, silent, until the SynthesizeStopped the client waits for.
            self._stream.markup = "" if _is_ssml(start.text_format) else None
            self._stream.voice = self._voice(start.voice)
            return
        if SynthesizeChunk.is_type(event.type):
            if self._stream is None:
                raise RequestError("synthesize-chunk outside a stream (send synthesize-start first)",
                                   "malformed-event")
            chunk = _parse(SynthesizeChunk.from_event, event)
            if self._stream.markup is not None:
                self._add_markup(self._stream, chunk.text)
                return
            for sentence in self._stream.sentences.add(chunk.text):
                await self._speak_stream_sentence(self._stream, sentence)
            return
        # SynthesizeStop
        stream, self._stream = self._stream, None
        if stream is not None and stream.markup is not None:
            await self._speak_stream_markup(stream)
        elif stream is not None:
            for sentence in stream.sentences.finish():
                await self._speak_stream_sentence(stream, sentence)
        await self.write_event(SynthesizeStopped().event())

    def _add_markup(self, stream: _Stream, text: str) -> None:
        if stream.voice is None:
            return  # the start failed: its error was sent
        stream.markup = (stream.markup or "") + text
        if len(stream.markup) > self.settings.max_text_chars:
            stream.voice = None  # one error, then silence until the stop
            raise RequestError(f"SSML stream has more than {self.settings.max_text_chars} characters; this "
                               "server speaks at most that many per request", "text-too-long")

    async def _speak_stream_markup(self, stream: _Stream) -> None:
        if stream.voice is None:
            return
        try:
            await self._speak_pieces(self._parse_ssml(stream.markup or ""), stream.voice)
        except RequestError as err:
            await self._send_error(err)
        if self._audio_open:
            self._audio_open = False
            await self.write_event(AudioStop().event())

    async def _speak_stream_sentence(self, stream: _Stream, sentence: str) -> None:
        if stream.voice is None:
            return
        index, stream.index = stream.index, stream.index + 1
        try:
            await self._speak(self._check_text(sentence), stream.voice, index)
        except RequestError as err:
            await self._send_error(err)
        if self._audio_open:
            self._audio_open = False
            await self.write_event(AudioStop().event())

    async def _speak_pieces(self, pieces: List[Piece], voice: Voice) -> None:
        """SSML's text and pauses as one audio stream: each pause becomes silence before the text after it."""
        rate = self.pool.synth.sample_rate
        index, pause = 0, 0
        for piece in pieces:
            if isinstance(piece, Pause):
                pause += round(piece.seconds * rate)
                continue
            await self._speak(piece, voice, index, lead_samples=pause)
            index, pause = index + len(self.pool.synth.sentences(piece)), 0
        if pause and self._audio_open:  # a break at the end
            chunker = PcmChunker(self.settings.samples_per_chunk)
            await self._send_pcm(chunker.push(to_pcm16(np.zeros(pause))) + chunker.flush())

    async def _speak(self, text: str, voice: Voice, index: int, lead_samples: Optional[int] = None) -> None:
        """Stream one text's audio to the client (AudioStart with the first frame; the caller sends AudioStop).

        ``index``: the position of the text's first sentence in the request (the synthesizer's sentence rule gives
        it the seed and the pause a one-shot ``Synthesize`` of the whole text would). ``lead_samples`` of silence
        replace that pause (SSML's ``<break>``).
        """
        try:
            job = self.pool.submit(text, voice, first_sentence=index, lead_pause=lead_samples is None)
        except ServerBusy as err:
            raise RequestError(str(err), "busy") from err
        rate = self.pool.synth.sample_rate
        chunker = PcmChunker(self.settings.samples_per_chunk)
        first = True
        async with job:
            try:
                async for samples in job:
                    if not self._audio_open:
                        await self.write_event(AudioStart(rate=rate, width=WIDTH, channels=CHANNELS).event())
                        self._audio_open = True
                    if first and lead_samples:
                        await self._send_pcm(chunker.push(to_pcm16(np.zeros(lead_samples))))
                    first = False
                    await self._send_pcm(chunker.push(to_pcm16(samples)))
            except TextError as err:
                raise RequestError(str(err), "unspeakable-text") from err
            except OSError:
                raise  # the client is gone
            except Exception as err:  # noqa: BLE001 - a failed request must not end the connection
                _LOGGER.exception("synthesis failed")
                raise RequestError(f"synthesis failed: {err}", "synthesis-failed") from err
        await self._send_pcm(chunker.flush())

    # ------------------------------------------------------------------ helpers
    def _voice(self, requested: Any) -> Voice:
        try:
            return self.book.resolve(requested)
        except UnknownSpeaker as err:
            raise RequestError(str(err), "unknown-speaker") from err
        except UnknownVoice as err:
            raise RequestError(str(err), "unknown-voice") from err

    def _parse_ssml(self, markup: str) -> List[Piece]:
        self._check_length(markup)
        try:
            pieces = parse_ssml(markup)
        except SsmlError as err:
            raise RequestError(str(err), "malformed-ssml") from err
        if not any(isinstance(piece, str) for piece in pieces):
            raise RequestError("empty text: the SSML has nothing to say", "empty-text")
        return pieces

    def _check_text(self, text: str) -> str:
        if not text.strip():
            raise RequestError("empty text: nothing to say", "empty-text")
        return self._check_length(text)

    def _check_length(self, text: str) -> str:
        if len(text) > self.settings.max_text_chars:
            raise RequestError(f"text has {len(text)} characters; this server speaks at most "
                               f"{self.settings.max_text_chars} per request", "text-too-long")
        return text

    async def _send_pcm(self, pieces: list) -> None:
        rate = self.pool.synth.sample_rate
        for pcm in pieces:
            await self.write_event(AudioChunk(rate=rate, width=WIDTH, channels=CHANNELS, audio=pcm).event())

    async def _send_error(self, err: RequestError) -> None:
        _LOGGER.debug("error %s: %s", err.code, err)
        await self.write_event(Error(text=str(err), code=err.code).event())
