"""KalleTTSService in real Pipecat pipelines (pipecat's own run_test) on the tiny random model."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pipecat")

from loguru import logger  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    ErrorFrame,
    InterruptionFrame,
    MetricsFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData, TTSUsageMetricsData  # noqa: E402
from pipecat.pipeline.worker import PipelineParams  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402
from pipecat.transcriptions.language import Language  # noqa: E402
from pipecat.utils.errors import ErrorCategory  # noqa: E402

from espnet_kalle.synthesizer import KalleSynthesizer  # noqa: E402
from pipecat_kalle import KalleTTSService  # noqa: E402

from model_factory import STOP_FRAMES  # noqa: E402
from pcm_reference import assert_pcm_of  # noqa: E402

TEXT = "hello there."
HOP = 1280


@pytest.fixture(scope="module")
def synth(tiny_model_dir):
    return KalleSynthesizer.from_pretrained(tiny_model_dir)


def _captured_logs(level: str):
    """Every record pipecat (loguru) logs at ``level`` or above while the fixture is alive."""
    records: list[str] = []
    sink = logger.add(lambda message: records.append(str(message)), level=level)
    yield records
    logger.remove(sink)


@pytest.fixture
def error_logs():
    yield from _captured_logs("ERROR")


@pytest.fixture
def warning_logs():
    yield from _captured_logs("WARNING")


@dataclass
class Record:
    calls: int = 0
    generated: int = 0  # chunks the synthesizer produced, over all calls
    after_cancel: int = 0  # chunks produced once the cancel event was set
    workers_alive_at_start: int = 0  # other synthesis threads still running when a call began


def instrument(monkeypatch, synth, delay=0.0, fail_calls=(), error: Exception | None = None) -> Record:
    """Wrap ``synth.stream`` to count chunks, slow it down, or make chosen calls fail."""
    record, real = Record(), synth.stream

    def stream(text, *args, **kwargs):
        record.calls += 1
        record.workers_alive_at_start += sum(
            t.name.endswith("-synth") and t is not threading.current_thread() for t in threading.enumerate()
        )
        if record.calls in fail_calls:
            raise error or RuntimeError("boom")
        cancel = kwargs.get("cancel")
        for chunk in real(text, *args, **kwargs):
            time.sleep(delay)
            record.generated += 1
            record.after_cancel += bool(cancel is not None and cancel.is_set())
            yield chunk

    monkeypatch.setattr(synth, "stream", stream)
    return record


def run(tts, frames):
    params = PipelineParams(enable_metrics=True, enable_usage_metrics=True)
    return asyncio.run(run_test(tts, frames_to_send=frames, pipeline_params=params))


def pcm(frames) -> np.ndarray:
    return np.frombuffer(b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame)), dtype=np.int16)


def streamed(synth, text: str, **options) -> np.ndarray:
    """What ``KalleSynthesizer.stream`` gives, the service's source (``synthesize`` decodes in other blocks, which
    can move a sample by one step of 16-bit PCM)."""
    return np.concatenate(list(synth.stream(text, **options)))


def utterances(down) -> list[list]:
    """The frames of each Started..Stopped span, checking that audio only ever appears inside one."""
    spans, current = [], None
    for frame in down:
        if isinstance(frame, TTSStartedFrame):
            assert current is None, "TTSStartedFrame inside an utterance"
            current = []
        elif isinstance(frame, TTSStoppedFrame):
            assert current is not None, "TTSStoppedFrame without TTSStartedFrame"
            spans.append(current)
            current = None
        elif isinstance(frame, TTSAudioRawFrame):
            assert current is not None, "audio outside Started/Stopped"
            current.append(frame)
    assert current is None, "utterance never stopped"
    return spans


def synth_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith("-synth")]


def test_streams_80ms_frames_matching_synthesize_with_metrics(synth, error_logs):
    tts = KalleTTSService(model=synth, voice="low-1", sample_rate=16000)
    down, up = run(tts, [TTSSpeakFrame(text=TEXT)])

    [audio] = utterances(down)
    assert audio and all(len(f.audio) == 2 * HOP and f.sample_rate == 16000 and f.num_channels == 1 for f in audio)
    assert len({f.context_id for f in audio}) == 1
    assert_pcm_of(pcm(audio), streamed(synth, TEXT, voice="low-1", seed=0))

    metrics = [d for f in down if isinstance(f, MetricsFrame) for d in f.data if d.processor == tts.name]
    assert any(isinstance(d, TTFBMetricsData) and d.value > 0 for d in metrics)
    assert any(isinstance(d, TTSUsageMetricsData) and d.value == len(TEXT) for d in metrics)
    assert tts.can_generate_metrics() and not up and not error_logs  # settings complete: no ERROR at start
    assert not synth_threads()


def test_pcm_is_the_wav_the_library_writes(synth, tmp_path):
    """The samples a Pipecat pipeline plays are those of the WAV file the library writes for the same audio
    (its save_audio, read back as int16): one float -> 16-bit conversion for files and streams."""
    from espnet_kalle.audio import save_audio

    tts = KalleTTSService(model=synth, voice="low-1", sample_rate=16000)
    down, _ = run(tts, [TTSSpeakFrame(text=TEXT)])
    path = tmp_path / "library.wav"
    save_audio(path, streamed(synth, TEXT, voice="low-1", seed=0), 16000)
    written, _ = sf.read(path, dtype="int16")
    [audio] = utterances(down)
    np.testing.assert_array_equal(pcm(audio), written)


def test_an_utterance_ends_by_the_models_stop_rule(stopping_model_dir, error_logs):
    """A model that predicts the end after STOP_FRAMES frames (its max_frames is 5x that): the service's utterance
    is exactly those frames, then TTSStoppedFrame."""
    tts = KalleTTSService(model=KalleSynthesizer.from_pretrained(stopping_model_dir), sample_rate=16000)
    down, _ = run(tts, [TTSSpeakFrame(text=TEXT)])
    [audio] = utterances(down)  # started, then stopped
    assert pcm(audio).size == STOP_FRAMES * HOP and not error_logs


def test_resamples_to_the_pipeline_rate_in_steady_80ms_frames(synth, error_logs):
    tts = KalleTTSService(model=synth, voice="low-1")  # sample_rate None: PipelineParams' 24 kHz
    down, _ = run(tts, [TTSSpeakFrame(text=TEXT), TTSSpeakFrame(text="how are you today?")])

    for audio in utterances(down):
        assert {f.sample_rate for f in audio} == {24000}
        sizes = [len(f.audio) for f in audio]
        assert len(sizes) > 2 and set(sizes[:-1]) == {2 * 1920}, sizes  # 80 ms at 24 kHz, then the rest
        assert 0 < sizes[-1] <= 2 * 1920
    reference = streamed(synth, TEXT, voice="low-1", seed=0)
    assert abs(pcm(utterances(down)[0]).size - 1.5 * reference.size) <= 2
    assert not error_logs


def test_frames_of_the_configured_chunk(synth):
    tts = KalleTTSService(model=synth, voice="low-1", sample_rate=16000, chunk_ms=30)
    down, _ = run(tts, [TTSSpeakFrame(text=TEXT)])

    [audio] = utterances(down)
    sizes = [len(f.audio) for f in audio]
    assert set(sizes[:-1]) == {2 * 480} and 0 < sizes[-1] <= 2 * 480, sizes
    assert_pcm_of(pcm(audio), streamed(synth, TEXT, voice="low-1", seed=0))
    with pytest.raises(ValueError, match="chunk_ms"):
        KalleTTSService(model=synth, chunk_ms=0)


def test_language_the_model_cannot_speak_is_refused_with_a_warning(synth, warning_logs, error_logs):
    tts = KalleTTSService(model=synth, voice="low-1", sample_rate=16000,
                          settings=KalleTTSService.Settings(language=Language.FR))
    assert tts._settings.language == Language.EN and tts.languages == ["en"]  # model.yaml: lang: en (pack's default)
    assert any("'fr'" in w and "speaks en" in w for w in warning_logs), warning_logs
    run(tts, [TTSUpdateSettingsFrame(delta=KalleTTSService.Settings(language=Language.ES)), TTSSpeakFrame(text=TEXT)])
    assert tts._settings.language == Language.EN
    assert any("'es'" in w for w in warning_logs), warning_logs

    english = KalleTTSService(model=synth, voice="low-1", sample_rate=16000)  # one service per pipeline run
    update = TTSUpdateSettingsFrame(delta=KalleTTSService.Settings(language="en-GB"))
    run(english, [update, TTSSpeakFrame(text=TEXT)])
    assert english._settings.language == Language.EN_GB  # English: the model's language, another accent
    assert not error_logs and len(warning_logs) == 2


def test_language_comes_from_the_model(tiny_model_dir, tmp_path, warning_logs):
    """A model dir whose model.yaml says ``lang: de`` is German to Pipecat; English is refused."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    with open(model / "model.yaml", "a", encoding="utf-8") as meta:
        meta.write("lang: de\n")
    tts = KalleTTSService(model=model, sample_rate=16000)
    assert tts.languages == ["de"] and tts._settings.language == Language.DE
    run(tts, [TTSUpdateSettingsFrame(delta=KalleTTSService.Settings(language=Language.EN)), TTSSpeakFrame(text=TEXT)])
    assert tts._settings.language == Language.DE and any("'en'" in w for w in warning_logs), warning_logs


def test_two_utterances_back_to_back_with_a_runtime_voice_and_speed_change(synth, error_logs):
    tts = KalleTTSService(model=synth, voice="low-1", sample_rate=16000)
    second = "how are you?"
    update = TTSUpdateSettingsFrame(delta=KalleTTSService.Settings(voice="high-1", speed=1.5))
    down, up = run(tts, [TTSSpeakFrame(text=TEXT), update, TTSSpeakFrame(text=second)])

    first_audio, second_audio = utterances(down)
    assert_pcm_of(pcm(first_audio), streamed(synth, TEXT, voice="low-1"))
    assert_pcm_of(pcm(second_audio), streamed(synth, second, voice="high-1", speed=1.5))
    assert tts.voice.name == "high-1" and not up and not error_logs


def test_bad_voice_update_is_reported_and_the_old_voice_kept(synth):
    tts = KalleTTSService(model=synth, voice=7, sample_rate=16000)
    assert tts._settings.voice == "seed-7"
    update = TTSUpdateSettingsFrame(delta=KalleTTSService.Settings(voice="no-such-voice"))
    down, up = run(tts, [update, TTSSpeakFrame(text=TEXT)])

    assert any(isinstance(f, ErrorFrame) and "no-such-voice" in f.error for f in up)
    [audio] = utterances(down)
    assert_pcm_of(pcm(audio), streamed(synth, TEXT, voice=7))


def test_interruption_stops_the_worker_within_a_frame(synth, monkeypatch):
    long_text = "one two three four five. six seven eight nine ten. eleven twelve thirteen."
    full = synth.synthesize(long_text, voice="low-1").size // HOP
    short = synth.synthesize(TEXT, voice="low-1").size // HOP
    record = instrument(monkeypatch, synth, delay=0.03)
    tts = KalleTTSService(model=synth, voice="low-1", sample_rate=16000)
    frames = [TTSSpeakFrame(text=long_text), SleepFrame(0.4), InterruptionFrame(), SleepFrame(0.1),
              TTSSpeakFrame(text=TEXT)]
    down, up = run(tts, frames)

    spoken = record.generated - short  # the interrupted utterance's share
    assert 0 < spoken < full // 2  # 0.4 s at 30 ms a frame: stopped long before the end
    assert record.after_cancel <= 1  # the LM stopped before its next frame
    assert record.workers_alive_at_start == 0  # the model was free when the next utterance began
    assert not synth_threads() and not any(isinstance(f, ErrorFrame) for f in up)

    interrupted_at = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    after = utterances(down[interrupted_at:])
    assert len(after) == 1 and pcm(after[0]).size == short * HOP


def test_model_errors_become_error_frames_and_the_service_keeps_working(synth, monkeypatch, error_logs):
    reference = streamed(synth, TEXT, voice="low-1")
    record = instrument(monkeypatch, synth, fail_calls=(1,))
    # A failed utterance has no audio, so Pipecat closes its context only after stop_frame_timeout_s (3 s).
    tts = KalleTTSService(model=synth, voice="low-1", sample_rate=16000, stop_frame_timeout_s=0.5)
    down, up = run(tts, [TTSSpeakFrame(text=TEXT), TTSSpeakFrame(text=TEXT)])

    boom = [f for f in up if isinstance(f, ErrorFrame) and "boom" in f.error]
    assert len(boom) == 1 and boom[0].category is ErrorCategory.SERVER and any("boom" in e for e in error_logs)
    assert tts.is_usable and record.calls == 2
    failed, spoken = utterances(down)
    assert not failed
    assert_pcm_of(pcm(spoken), reference)
    assert not synth_threads()


def test_unspeakable_sentences_are_skipped_not_failed(synth, error_logs):
    tts = KalleTTSService(model=synth, voice="low-1", sample_rate=16000)
    down, up = run(tts, [TTSSpeakFrame(text="\u2603\u2603"), TTSSpeakFrame(text=f"{TEXT} \u2603.")])

    [audio] = utterances(down)  # the snowmen alone start no utterance; beside a sentence they are dropped
    assert_pcm_of(pcm(audio), streamed(synth, TEXT, voice="low-1"))
    assert not up and not error_logs


def test_runner_example_bot_speaks_with_kalle(tiny_model_dir, monkeypatch, error_logs):
    """examples/voice_agent.py follows Pipecat's runner convention (``bot(runner_args)``, transport factories
    under the keys ``create_transport`` reads) and its KALL-E service speaks in a pipeline as configured."""
    import importlib.util
    import inspect
    from pathlib import Path

    from pipecat.transports.base_transport import TransportParams

    path = Path(__file__).resolve().parents[2] / "integrations" / "pipecat_kalle" / "examples" / "voice_agent.py"
    spec = importlib.util.spec_from_file_location("kalle_voice_agent", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    assert inspect.iscoroutinefunction(example.bot) and list(inspect.signature(example.bot).parameters) == [
        "runner_args"]
    assert {"daily", "twilio", "webrtc"} <= set(example.transport_params)
    webrtc = example.transport_params["webrtc"]()
    assert isinstance(webrtc, TransportParams) and webrtc.audio_in_enabled and webrtc.audio_out_enabled

    monkeypatch.setenv("KALLE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("KALLE_VOICE", "high-1")
    monkeypatch.setenv("KALLE_SPEED", "1.25")
    tts = example.create_tts()
    assert tts.voice.name == "high-1" and tts._settings.speed == 1.25
    down, _ = run(tts, [TTSSpeakFrame(text=TEXT)])
    [audio] = utterances(down)
    assert audio and {f.sample_rate for f in audio} == {24000} and not error_logs
