"""KalleTTSService: KALL-E speech streamed into Pipecat pipelines 80 ms at a time, stoppable mid-utterance.

KALL-E generates one continuous latent per LM step and decodes it causally, so every step is 80 ms of audio
that can be played at once. The service resamples it to the pipeline's rate and pushes it as ``TTSAudioRawFrame``s
of one steady size (80 ms by default) while the LM keeps going in a worker thread; on interruption it stops the LM
before its next step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.tracing.service_decorators import traced_tts
from pipecat.utils.types import NOT_GIVEN, NotGiven, is_given

from espnet_kalle.languages import model_languages, normalize_language, speaks
from espnet_kalle.pcm import PcmChunker, to_pcm16
from espnet_kalle.synthesizer import SPEED_RANGE, KalleSynthesizer, VoiceLike
from espnet_kalle.text import TextError
from espnet_kalle.voice import Voice
from pipecat_kalle.worker import ThreadedStream

DEFAULT_MODEL = "mini-en"
_SEED_VOICE = re.compile(r"seed-(\d+)")


@dataclass
class KalleTTSSettings(TTSSettings):
    """Runtime-updatable settings of KalleTTSService (store mode keeps every field set).

    Parameters:
        voice: A preset name (``"low-1"``), a seed (``42``), a ``.voice.pt`` path or a ``Voice``
            (cloned or adapted). The service stores the resolved voice's name here and keeps the
            ``Voice`` itself, so settings stay plain values.
        speed: Speaking rate, 0.25-4 (1 is the model's own pace).
        temperature: LM sampling temperature; None keeps the model's configured one.
        seed: Sampling seed per utterance (same text + seed = same audio); None draws a new one each time.
    """

    voice: str | int | Voice | None | NotGiven = field(default_factory=lambda: NOT_GIVEN)
    speed: float | None | NotGiven = field(default_factory=lambda: NOT_GIVEN)
    temperature: float | None | NotGiven = field(default_factory=lambda: NOT_GIVEN)
    seed: int | None | NotGiven = field(default_factory=lambda: NOT_GIVEN)


class KalleTTSService(TTSService):
    """Local KALL-E text-to-speech that streams while it generates.

    Example::

        tts = KalleTTSService(voice="low-1")                     # the embedded mini-en model
        tts = KalleTTSService(model="exp/my_model", settings=KalleTTSService.Settings(speed=1.1))
        other = KalleTTSService(model=tts.synthesizer, voice=42)  # share the loaded weights

    Audio is produced at the model's 16 kHz, resampled to the pipeline's output rate and pushed in frames of
    ``chunk_ms`` (80 ms: one generated frame at 16 kHz); the last frame of an utterance holds what is left.
    Voice, speed, temperature and seed change at runtime with
    ``TTSUpdateSettingsFrame(delta=KalleTTSService.Settings(...))`` and apply from the next sentence on. The
    language is the model's (``lang`` in its model.yaml; English when it names none): a language it cannot speak
    is refused with a warning and the current one kept.
    """

    Settings = KalleTTSSettings
    _settings: Settings

    def __init__(
        self,
        *,
        model: str | Path | KalleSynthesizer = DEFAULT_MODEL,
        voice: VoiceLike = None,
        device: str = "cpu",
        settings: Settings | None = None,
        stop_timeout_s: float = 2.0,
        chunk_ms: int = 80,
        **kwargs: Any,
    ):
        """Load (or share) the model and resolve the voice, so a bad name fails here and not mid-call.

        Args:
            model: ``"mini-en"``, a packed model dir, or an already loaded ``KalleSynthesizer``
                (services built on the same synthesizer share its weights).
            voice: Voice to start with; ``settings.voice`` wins when both are given.
            device: Torch device used when ``model`` is loaded here.
            settings: Initial settings delta over the defaults (model voice, model language, speed 1, seed 0).
            stop_timeout_s: How long an interruption waits for the worker thread to finish its frame.
            chunk_ms: Duration of each pushed audio frame (the last of an utterance may be shorter).
            **kwargs: Passed to ``TTSService`` (e.g. ``sample_rate``; None takes the pipeline's rate).
        """
        if not isinstance(chunk_ms, int) or chunk_ms < 1:
            raise ValueError(f"chunk_ms must be a positive number of milliseconds, got {chunk_ms!r}")
        synth = model if isinstance(model, KalleSynthesizer) else KalleSynthesizer.from_pretrained(model, device)
        requested = settings.voice if settings is not None and is_given(settings.voice) else voice
        resolved = _resolve_voice(synth, requested)
        languages = model_languages(synth.meta)

        store = self.Settings(
            model=synth.name or "kalle", voice=resolved.name, language=_pipecat_language(languages[0]),
            speed=1.0, temperature=None, seed=0,
        )
        if settings is not None:
            given = dataclasses.replace(settings, voice=NOT_GIVEN)
            if not _speakable_language(given.language, languages):
                _warn_language(given.language, languages, store.language)
                given = dataclasses.replace(given, language=NOT_GIVEN)
            store.apply_update(given)
        _check_speed(store.speed)

        super().__init__(push_start_frame=True, push_stop_frames=True, settings=store, **kwargs)
        self._synth = synth
        self._voice = resolved
        self._languages = languages
        self._chunk_ms = chunk_ms
        self._stop_timeout_s = stop_timeout_s
        self._stream: ThreadedStream[np.ndarray] | None = None
        # The base resampler forgets its filter history after 0.2 s without input; a loaded CPU can take that
        # long between two frames, which would drop samples mid-word. Each utterance is flushed (or reset on
        # interruption) explicitly instead.
        self._resampler = create_stream_resampler(clear_after_secs=None)
        self.add_text_transformer(self._speakable_text)

    @property
    def synthesizer(self) -> KalleSynthesizer:
        """The loaded model, to share with another service or to clone voices from."""
        return self._synth

    @property
    def voice(self) -> Voice:
        """The voice the next utterance will use."""
        return self._voice

    @property
    def languages(self) -> list[str]:
        """The languages the model speaks (``en_US`` style), from its model.yaml."""
        return list(self._languages)

    @property
    def worker_thread(self) -> threading.Thread | None:
        """The thread of the utterance in progress (or the last one), for monitoring."""
        return self._stream.thread if self._stream is not None else None

    def can_generate_metrics(self) -> bool:
        """TTFB, TTFA and usage metrics are measured here, not by a remote provider."""
        return True

    async def _update_settings(self, delta: Settings) -> dict[str, Any]:
        """Apply a delta; a voice or speed the model cannot use is reported and the old one kept."""
        voice = None
        if not isinstance(delta, KalleTTSSettings):  # a plain TTSSettings delta works too
            delta = KalleTTSSettings.from_mapping(delta.given_fields())
        if is_given(delta.voice):
            try:
                voice = _resolve_voice(self._synth, delta.voice)
            except (KeyError, TypeError, ValueError, OSError) as error:
                await self.push_error(f"{self}: voice not changed: {error}", exception=error,
                                      category=ErrorCategory.APPLICATION)
            delta = dataclasses.replace(delta, voice=voice.name if voice is not None else NOT_GIVEN)
        if is_given(delta.language) and not _speakable_language(delta.language, self._languages):
            _warn_language(delta.language, self._languages, self._settings.language)
            delta = dataclasses.replace(delta, language=NOT_GIVEN)
        if is_given(delta.speed):
            try:
                _check_speed(delta.speed)
            except ValueError as error:
                await self.push_error(f"{self}: speed not changed: {error}", exception=error,
                                      category=ErrorCategory.APPLICATION)
                delta = dataclasses.replace(delta, speed=NOT_GIVEN)

        changed = await super()._update_settings(delta)
        if voice is not None:
            self._voice = voice  # even under an unchanged name: a new clone may reuse "clone"
        if "model" in changed:
            self._warn_unhandled_updated_settings({"model"})  # weights are chosen at construction
        return changed

    async def _speakable_text(self, text: str, text_type: str) -> str:
        """Drop sentences the model has no sound for (emoji, symbols); "" makes Pipecat skip the text.

        The synthesizer rejects a whole text when one sentence is unspeakable, and an utterance without audio
        holds Pipecat's audio-context queue for ``stop_frame_timeout_s``: silence is the better answer.
        """
        sentences = self._synth.sentences(text)
        kept = [s for s in sentences if self._synth.is_speakable(s)]
        if len(kept) == len(sentences):
            return text
        logger.debug(f"{self}: nothing to say in {[s for s in sentences if s not in kept]}")
        return " ".join(kept)

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Stream ``text`` as frames of ``chunk_ms`` while the LM generates it in a worker thread.

        Args:
            text: The text to speak (one sentence, with Pipecat's default aggregation).
            context_id: The audio context the frames belong to.

        Yields:
            ``TTSAudioRawFrame``s of ``chunk_ms`` at the pipeline rate (the last one: the rest), or one
            ``ErrorFrame``.
        """
        await self.start_tts_usage_metrics(text)
        stream = ThreadedStream(self._producer(text), name=f"{self.name}-synth")
        self._stream = stream.start()
        chunker = PcmChunker(max(1, self.sample_rate * self._chunk_ms // 1000))
        flushed = False
        try:
            first = True
            async for chunk in stream:
                for audio in chunker.push(await self._resample(to_pcm16(chunk))):
                    if first:
                        await self.stop_ttfb_metrics()
                        first = False
                    yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
            tail = await self._flush_resampler()
            flushed = True
            for audio in chunker.push(tail) + chunker.flush():
                yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
        except asyncio.CancelledError:
            # An interruption cancels this task, but not the thread: stop the LM before its next frame and wait
            # for the thread, so the model is free for the next utterance and nothing keeps computing.
            stopped = await stream.stop(self._stop_timeout_s)
            logger.debug(f"{self}: interrupted; synthesis {'stopped' if stopped else 'still stopping'}")
            raise
        except Exception as error:  # noqa: BLE001 - any model failure ends this utterance, not the service
            category = ErrorCategory.APPLICATION if isinstance(error, TextError) else ErrorCategory.SERVER
            yield ErrorFrame(error=f"{self} synthesis failed: {error}", exception=error, category=category)
        finally:
            if not flushed:  # the next utterance must not start with this one's filter history
                await self._resampler.reset()
            await stream.stop(self._stop_timeout_s)  # normal end or generator closed: the thread is (nearly) done

    def _producer(self, text: str) -> Callable[[threading.Event], Iterator[np.ndarray]]:
        """Bind the current settings now: an update mid-utterance applies to the next one."""
        voice, speed, temperature = self._voice, self._settings.speed, self._settings.temperature
        seed = self._settings.seed if self._settings.seed is not None else random.randrange(2**31)

        def produce(cancel: threading.Event) -> Iterator[np.ndarray]:
            return self._synth.stream(text, voice=voice, temperature=temperature, speed=speed or 1.0,
                                      seed=seed, cancel=cancel)

        return produce

    async def _resample(self, pcm: bytes) -> bytes:
        """The model's 16 kHz -> the pipeline's rate (the resampler may hold a few ms back until the flush)."""
        if self.sample_rate == self._synth.sample_rate:
            return pcm
        return await self._resampler.resample(pcm, self._synth.sample_rate, self.sample_rate)

    async def _flush_resampler(self) -> bytes:
        """The resampler's filter delay holds the last few ms of the utterance: emit them."""
        if self.sample_rate == self._synth.sample_rate:
            return b""
        return await self._resampler.flush()


def _resolve_voice(synth: KalleSynthesizer, voice: VoiceLike) -> Voice:
    """Like ``synth.voice`` but also accepts the ``"seed-N"`` names that seed voices are stored under."""
    if isinstance(voice, str) and voice not in synth.voices:
        match = _SEED_VOICE.fullmatch(voice)
        if match:
            voice = int(match.group(1))
    return synth.voice(voice)


def _pipecat_language(code: str) -> Language | str:
    """``en_US`` -> ``Language.EN``: the model's language as Pipecat names it (the base language; the
    sentence splitter and the model care about that, not the region)."""
    base = normalize_language(code).split("_")[0]
    try:
        return Language(base)
    except ValueError:
        return base


def _speakable_language(language: Any, languages: list[str]) -> bool:
    """None (no language) or one the model speaks; NOT_GIVEN counts as fine (nothing to change)."""
    return not is_given(language) or language is None or speaks(str(getattr(language, "value", language)), languages)


def _warn_language(language: Any, languages: list[str], kept: Any) -> None:
    logger.warning(f"KalleTTSService: language {getattr(language, 'value', language)!r} not set: the model speaks "
                   f"{', '.join(languages)}; keeping {getattr(kept, 'value', kept)!r}")


def _check_speed(speed: float | None) -> None:
    low, high = SPEED_RANGE
    if speed is not None and not low <= speed <= high:
        raise ValueError(f"speed must be within [{low:g}, {high:g}], got {speed}")
