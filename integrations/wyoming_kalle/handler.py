"""One event handler per client connection.

Protocol as Home Assistant uses it (wyoming >= 1.7):
- ``Describe`` -> ``Info``, answered at once: inference never runs on the event loop (see ``synthesis``).
- ``Synthesize`` -> ``AudioStart``, ``AudioChunk``... (sent as frames are generated), ``AudioStop``.
- ``SynthesizeStart``, ``SynthesizeChunk``..., [compatibility ``Synthesize``, ignored], ``SynthesizeStop`` ->
  per sentence ``AudioStart``/``AudioChunk``.../``AudioStop`` as soon as the sentence is complete, then
  ``SynthesizeStopped``. Every stream is 16 kHz 16-bit mono (HA builds its WAV from the first ``AudioStart``).

A request that fails gets an ``Error(text, code)`` and still ends the way the client waits for (``AudioStop`` for
``Synthesize``, ``SynthesizeStopped`` for a stream): Home Assistant ignores ``Error`` and would otherwise wait
forever. The connection stays open. Codes: malformed-event, empty-text, text-too-long, unknown-voice,
unspeakable-text, busy, synthesis-failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from espnet_kalle.text import TextError
from espnet_kalle.voice import Voice

from .audio import CHANNELS, WIDTH, PcmChunker, to_pcm16
from .sentences import SentenceBuffer
from .synthesis import ServerBusy, SynthesisPool
from .voices import UnknownVoice, VoiceBook
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
    """State of one SynthesizeStart..SynthesizeStop session; ``voice`` is None when its start failed."""

    voice: Optional[Voice]
    sentences: SentenceBuffer
    index: int = 0


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
        """Like the base class, but a bad event gets an Error instead of silently dropping the connection."""
        self._is_running = True
        strikes = 0
        try:
            while self._is_running:
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
            await self._speak(self._check_text(request.text), voice, index=0)
        except RequestError as err:
            await self._send_error(err)
        self._audio_open = False
        await self.write_event(AudioStop().event())

    async def _handle_stream_event(self, event: Event) -> None:
        if SynthesizeStart.is_type(event.type):
            start = _parse(SynthesizeStart.from_event, event)
            self._stream = _Stream(None, SentenceBuffer(self.settings.max_text_chars))
            self._stream.voice = self._voice(start.voice)  # on error the stream stays open, silent
            return
        if SynthesizeChunk.is_type(event.type):
            if self._stream is None:
                raise RequestError("synthesize-chunk outside a stream (send synthesize-start first)",
                                   "malformed-event")
            chunk = _parse(SynthesizeChunk.from_event, event)
            for sentence in self._stream.sentences.add(chunk.text):
                await self._speak_stream_sentence(sentence)
            return
        # SynthesizeStop
        if self._stream is not None:
            for sentence in self._stream.sentences.finish():
                await self._speak_stream_sentence(sentence)
        self._stream = None
        await self.write_event(SynthesizeStopped().event())

    async def _speak_stream_sentence(self, sentence: str) -> None:
        stream = self._stream
        if stream is None or stream.voice is None:
            return
        index, stream.index = stream.index, stream.index + 1
        try:
            await self._speak(self._check_text(sentence), stream.voice, index)
        except RequestError as err:
            await self._send_error(err)
        if self._audio_open:
            self._audio_open = False
            await self.write_event(AudioStop().event())

    async def _speak(self, text: str, voice: Voice, index: int) -> None:
        """Stream one text's audio to the client (AudioStart with the first frame; the caller sends AudioStop).

        ``index`` > 0 marks a later sentence of a stream: it gets the seed and the leading pause that a one-shot
        ``Synthesize`` of the whole text gives it, so streamed and one-shot audio are the same.
        """
        try:
            job = self.pool.submit(text, voice, sentence_index=index)
        except ServerBusy as err:
            raise RequestError(str(err), "busy") from err
        rate = self.pool.synth.sample_rate
        chunker = PcmChunker(self.settings.samples_per_chunk)
        async with job:
            try:
                async for samples in job:
                    if not self._audio_open:
                        await self.write_event(AudioStart(rate=rate, width=WIDTH, channels=CHANNELS).event())
                        self._audio_open = True
                        if index > 0:
                            await self._send_pcm(chunker.push(to_pcm16(np.zeros(self.pool.synth.hop_length))))
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
        except UnknownVoice as err:
            raise RequestError(str(err), "unknown-voice") from err

    def _check_text(self, text: str) -> str:
        if not text.strip():
            raise RequestError("empty text: nothing to say", "empty-text")
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
