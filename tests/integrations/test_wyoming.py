"""The Wyoming server against the real wyoming client on loopback, with the tiny random model.

The server runs on its own event loop in a thread (as if it were another process) so the tests can look at its
worker pool; one test starts the real ``python -m wyoming_kalle`` entry point.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import List, Optional, Set

import numpy as np
import pytest

pytest.importorskip("wyoming")  # the [wyoming] extra; conftest.py puts integrations/ on sys.path
INTEGRATIONS = Path(__file__).resolve().parents[2] / "integrations"

from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.event import Event, async_read_event  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.server import AsyncTcpServer  # noqa: E402
from wyoming.tts import (  # noqa: E402
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeTextFormat,
    SynthesizeVoice,
)

from espnet_kalle.errors import InputError  # noqa: E402
from espnet_kalle.synthesizer import KalleSynthesizer  # noqa: E402
from espnet_kalle.voice import Voice  # noqa: E402
from wyoming_kalle.handler import HandlerSettings, KalleEventHandler  # noqa: E402
from wyoming_kalle.synthesis import SynthesisPool  # noqa: E402
from wyoming_kalle.voices import build_info, load_voice_book  # noqa: E402

from model_factory import STOP_FRAMES  # noqa: E402
from pcm_reference import assert_pcm_of, is_pcm_of  # noqa: E402

TIMEOUT = 30.0
TEXT = "Hello there. How are you?"
DATA = Path(__file__).resolve().parents[1] / "data"
PROMPT_WAV = DATA / "prompt_70_3s.wav"  # three seconds of a real recording and its transcript
PROMPT_TEXT = "one division of la force is called the court of saint bernard."
LONG_TEXT = " ".join(["One two."] * 150)  # ~2500 frames: long enough to disconnect in the middle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """The real server (AsyncTcpServer + KalleEventHandler) on its own event loop."""

    def __init__(self, synth: KalleSynthesizer, voices_dir: Optional[Path], workers: int, queue_size: int,
                 settings: Optional[HandlerSettings] = None):
        self.book = book = load_voice_book(synth, voices_dir)
        self.pool = SynthesisPool(synth, workers, queue_size)
        self.port = free_port()
        self.server = AsyncTcpServer("127.0.0.1", self.port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = settings or HandlerSettings()
        factory = partial(KalleEventHandler, build_info(book, synth.name), book, self.pool, settings)
        asyncio.run_coroutine_threadsafe(self.server.start(factory), self.loop).result(TIMEOUT)

    def idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pool.active == 0 and self.pool.waiting == 0:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.pool.close()


@pytest.fixture(scope="module")
def synth(tiny_model_dir) -> KalleSynthesizer:
    return KalleSynthesizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def voices_dir(synth, tmp_path_factory) -> Path:
    """A voices dir as Home Assistant users fill it: a saved cloned voice, as ``synth.clone(...).save(...)`` would
    leave it, and a recording with its transcript (``grandma/ref.wav`` + ``ref.txt``) to clone at start."""
    directory = tmp_path_factory.mktemp("saved_voices")
    speaker = synth.voice(7).speaker
    Voice("my-clone", speaker=speaker, description="cloned from me.wav").save(directory / "my-clone.voice.pt")
    add_reference_voice(directory, "grandma")
    (directory / "notes").mkdir()  # a folder without ref.wav is not a voice
    return directory


def add_reference_voice(directory: Path, name: str, text: Optional[str] = PROMPT_TEXT) -> Path:
    folder = directory / name
    folder.mkdir()
    shutil.copy(PROMPT_WAV, folder / "ref.wav")
    if text is not None:
        (folder / "ref.txt").write_text(text + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def server(synth, voices_dir):
    running = ServerThread(synth, voices_dir, workers=2, queue_size=8)
    yield running
    running.close()


async def read(client: AsyncTcpClient) -> Event:
    event = await asyncio.wait_for(client.read_event(), TIMEOUT)
    assert event is not None, "server closed the connection"
    return event


async def read_until(client: AsyncTcpClient, last: Set[str]) -> List[Event]:
    events = [await read(client)]
    while events[-1].type not in last:
        events.append(await read(client))
    return events


def samples_of(events: List[Event]) -> np.ndarray:
    return np.concatenate([np.frombuffer(e.payload or b"", dtype="<i2") for e in events
                           if AudioChunk.is_type(e.type)] or [np.zeros(0, dtype="<i2")])


def streamed(synth, text: str, **options) -> np.ndarray:
    """What ``KalleSynthesizer.stream`` gives, the server's source (``synthesize`` decodes in other blocks, which
    can move a sample by one step of 16-bit PCM)."""
    return np.concatenate(list(synth.stream(text, **options)))


async def synthesize(port: int, text: str, voice: Optional[str] = None, **fields) -> List[Event]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text, voice=SynthesizeVoice(voice) if voice else None, **fields).event())
        return await read_until(client, {AudioStop().event().type})


def error_code(event: Event) -> str:
    assert Error.is_type(event.type), event
    return Error.from_event(event).code


# ---------------------------------------------------------------------------------------------- protocol
def test_describe_lists_presets_and_saved_voices(server):
    async def run():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await read(client))

    info = asyncio.run(run())
    assert len(info.tts) == 1
    program = info.tts[0]
    assert program.installed and program.supports_synthesize_streaming
    assert program.name and program.version and program.attribution.name and program.attribution.url
    assert {v.name for v in program.voices} == {"grandma", "high-1", "low-1", "mid-1", "my-clone"}
    for voice in program.voices:  # what Home Assistant reads: installed voices, their languages, a label
        assert voice.installed and voice.languages == ["en"]  # the model dir's lang (pack's default)
        assert voice.description and voice.attribution.name and voice.version
        assert not voice.speakers  # none: a request naming a speaker is refused (test_speaker_is_refused)
    assert next(v for v in program.voices if v.name == "my-clone").description == "my-clone (cloned)"
    assert next(v for v in program.voices if v.name == "grandma").description == "grandma (cloned)"


def test_reference_recordings_are_cloned_at_start(server, synth):
    """``grandma/ref.wav`` + ``ref.txt`` speaks as the library's clone of that recording and transcript."""
    events = asyncio.run(synthesize(server.port, TEXT, "grandma"))
    clone = synth.clone(PROMPT_WAV, PROMPT_TEXT, name="grandma")
    assert_pcm_of(samples_of(events), streamed(synth, TEXT, voice=clone, seed=0))
    assert not is_pcm_of(samples_of(events), streamed(synth, TEXT, voice="mid-1", seed=0))


def test_reference_folders_that_cannot_be_cloned_stop_the_start(synth, tmp_path):
    add_reference_voice(tmp_path, "no-transcript", text=None)
    with pytest.raises(InputError, match="no-transcript.*no ref.txt"):
        load_voice_book(synth, tmp_path)
    shutil.rmtree(tmp_path / "no-transcript")
    add_reference_voice(tmp_path, "wrong-transcript", text="hi")  # 2 tokens for 3 s of speech
    with pytest.raises(ValueError, match="cannot clone voice 'wrong-transcript'.*transcript of this recording"):
        load_voice_book(synth, tmp_path)


def test_speaker_is_refused(server):
    async def run():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Synthesize(TEXT, voice=SynthesizeVoice("low-1", speaker="0")).event())
            one_shot = await read_until(client, {AudioStop().event().type})
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice("low-1", speaker="x")).event())
            await client.write_event(SynthesizeChunk("Hello there.").event())
            await client.write_event(SynthesizeStop().event())
            stream = await read_until(client, {SynthesizeStopped().event().type})
        return one_shot, stream

    one_shot, stream = asyncio.run(run())
    for events in (one_shot, stream):
        assert len(events) == 2 and error_code(events[0]) == "unknown-speaker", events
        assert "no speaker" in Error.from_event(events[0]).text


# ---------------------------------------------------------------------------------------------- SSML
SSML = ('<speak version="1.1" xmlns="http://www.w3.org/2001/10/synthesis">Hello <emphasis>there</emphasis>.'
        '<break time="500ms"/><prosody rate="slow">How are <sub alias="you">u</sub>?</prosody></speak>')


def ssml_audio(synth) -> np.ndarray:
    """What SSML should sound like: the words alone, in two pieces around half a second of silence (the second
    piece with the seed of sentence 2, as in a one-shot request of both sentences)."""
    first = streamed(synth, "Hello there.", voice="low-1", seed=0)
    second = streamed(synth, "How are you?", voice="low-1", seed=1)
    return np.concatenate([first, np.zeros(8000, dtype=np.float32), second])


def test_ssml_tags_are_not_spoken_and_breaks_are_silence(server, synth):
    events = asyncio.run(synthesize(server.port, SSML, "low-1", text_format=SynthesizeTextFormat.SSML))
    assert not any(Error.is_type(e.type) for e in events), events
    expected = ssml_audio(synth)
    audio = samples_of(events)
    assert_pcm_of(audio, expected)
    # The same markup as plain text would be a different utterance: the tags would be read out.
    as_text = samples_of(asyncio.run(synthesize(server.port, SSML, "low-1")))
    assert as_text.shape != expected.shape


def test_ssml_stream_is_spoken_once_complete(server, synth):
    pieces = [SSML[:40], SSML[40:93], SSML[93:]]  # cut inside tags

    async def run():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice("low-1"), text_format="ssml").event())
            for piece in pieces:
                await client.write_event(SynthesizeChunk(piece).event())
            await client.write_event(Synthesize(SSML, voice=SynthesizeVoice("low-1"), text_format="ssml").event())
            await client.write_event(SynthesizeStop().event())
            return await read_until(client, {SynthesizeStopped().event().type})

    events = asyncio.run(run())
    assert not any(Error.is_type(e.type) for e in events), events
    assert sum(AudioStart.is_type(e.type) for e in events) == 1 and sum(AudioStop.is_type(e.type) for e in events) == 1
    assert_pcm_of(samples_of(events), ssml_audio(synth))  # as the one-shot request: nothing else spoken


def test_bad_ssml_and_unknown_formats_get_errors(server):
    async def run():
        codes = []
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            for text, text_format in [("<speak>Hello <break time='soon'/></speak>", "ssml"),
                                      ("<speak>Hello", "ssml"),
                                      ('<!DOCTYPE speak [<!ENTITY a "aaaa">]><speak>&a;</speak>', "ssml"),
                                      ("<speak><break time='1s'/></speak>", "ssml"),
                                      ("**Hello**", "markdown")]:
                await client.write_event(Synthesize(text, text_format=text_format).event())
                events = await read_until(client, {AudioStop().event().type})
                assert len(events) == 2, events
                codes.append(error_code(events[0]))
        return codes

    assert asyncio.run(run()) == ["malformed-ssml", "malformed-ssml", "malformed-ssml", "empty-text",
                                  "unsupported-text-format"]


def test_synthesize_streams_the_library_audio(server, synth):
    events = asyncio.run(synthesize(server.port, TEXT, "low-1"))
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (16000, 2, 1)
    assert AudioStop.is_type(events[-1].type)
    chunks = [e for e in events if AudioChunk.is_type(e.type)]
    assert len(chunks) > 1 and all(len(c.payload) == 2 * synth.hop_length for c in chunks)  # one chunk per frame
    assert_pcm_of(samples_of(events), streamed(synth, TEXT, voice="low-1", seed=0))


def test_streaming_ignores_the_compatibility_copy(server, synth):
    pieces = ["Hello the", "re. How are", " you? I am", " fine"]
    full = "".join(pieces)

    async def run():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice("mid-1")).event())
            for piece in pieces:
                await client.write_event(SynthesizeChunk(piece).event())
            await client.write_event(Synthesize(full, voice=SynthesizeVoice("mid-1")).event())  # what HA sends
            await client.write_event(SynthesizeStop().event())
            return await read_until(client, {SynthesizeStopped().event().type})

    events = asyncio.run(run())
    assert not any(Error.is_type(e.type) for e in events)
    starts = [AudioStart.from_event(e) for e in events if AudioStart.is_type(e.type)]
    assert len(starts) == 3  # one per sentence, all in one format
    assert {(s.rate, s.width, s.channels) for s in starts} == {(16000, 2, 1)}
    assert sum(AudioStop.is_type(e.type) for e in events) == 3
    # Same audio as one Synthesize of the whole text: nothing spoken twice, nothing lost.
    assert_pcm_of(samples_of(events), streamed(synth, full, voice="mid-1", seed=0))


def test_errors_leave_the_connection_usable(server):
    async def run():
        codes = []
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            for text, voice in [(TEXT, "nobody"), ("   ", None), ("word " * 500, None), ("\u2603\u2603", None)]:
                await client.write_event(Synthesize(text, voice=SynthesizeVoice(voice) if voice else None).event())
                events = await read_until(client, {AudioStop().event().type})
                assert len(events) == 2, events  # Error, then the AudioStop Home Assistant waits for
                codes.append(error_code(events[0]))
            await client.write_event(Event("synthesize", {"voice": {"name": "low-1"}}))  # no text
            codes.append(error_code(await read(client)))
            await client.write_event(SynthesizeChunk("orphan chunk.").event())
            codes.append(error_code(await read(client)))
            # A stream whose voice is unknown: one Error, then silence until the SynthesizeStopped HA waits for.
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice("nobody")).event())
            await client.write_event(SynthesizeChunk("Hello there. How").event())
            await client.write_event(Synthesize("Hello there. How").event())
            await client.write_event(SynthesizeStop().event())
            stream_events = await read_until(client, {SynthesizeStopped().event().type})
            assert len(stream_events) == 2, stream_events
            codes.append(error_code(stream_events[0]))
            await client.write_event(Synthesize("Fine.").event())
            events = await read_until(client, {AudioStop().event().type})
        return codes, events

    codes, events = asyncio.run(run())
    assert codes == ["unknown-voice", "empty-text", "text-too-long", "unspeakable-text", "malformed-event",
                     "malformed-event", "unknown-voice"]
    assert AudioStart.is_type(events[0].type) and len(samples_of(events)) > 0


def test_garbage_bytes_do_not_take_the_server_down(server):
    async def run():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00\xffnot json at all\n[1, 2, 3]\n" b'{"type": "describe"}\n')
        await writer.drain()
        first = [await asyncio.wait_for(async_read_event(reader), TIMEOUT) for _ in range(3)]
        # An absurd announced size cannot be skipped safely: Error, then the server hangs up.
        writer.write(b'{"type": "synthesize", "data_length": 1000000000}\n')
        await writer.drain()
        last = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
        closed = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # binary noise, no newlines
        writer.write(bytes(np.random.default_rng(0).integers(1, 256, 200_000, dtype=np.uint8)).replace(b"\n", b" "))
        await writer.drain()
        noise = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
        writer.close()
        return first, last, closed, noise

    first, last, closed, noise = asyncio.run(run())
    assert [error_code(e) for e in first[:2]] == ["malformed-event", "malformed-event"]
    assert Info.is_type(first[2].type)  # the same connection still answers
    assert error_code(last) == "malformed-event" and closed == b""
    assert error_code(noise) == "malformed-event"
    events = asyncio.run(synthesize(server.port, "Still here."))
    assert AudioStart.is_type(events[0].type)


# ---------------------------------------------------------------------------------------------- load
def test_eight_clients_served_while_describe_answers_fast(server, synth):
    text = "Hello there. How are you today? I am fine. Thanks for asking. See you soon. Bye now."
    voices = ["high-1", "low-1", "mid-1", "my-clone"]
    expected = {v: streamed(synth, text, voice=server.book.voices[v]) for v in voices}

    async def run():
        first_audio = asyncio.Event()

        async def client(voice):
            async with AsyncTcpClient("127.0.0.1", server.port) as c:
                await c.write_event(Synthesize(text, voice=SynthesizeVoice(voice)).event())
                events = [await read(c)]
                first_audio.set()
                events += await read_until(c, {AudioStop().event().type})
                return voice, events

        tasks = [asyncio.create_task(client(voices[i % len(voices)])) for i in range(8)]
        await asyncio.wait_for(first_audio.wait(), TIMEOUT)
        busy = server.pool.active + server.pool.waiting
        started = time.perf_counter()
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(Describe().event())
            info_event = await read(c)
        describe_seconds = time.perf_counter() - started
        return busy, describe_seconds, info_event, await asyncio.gather(*tasks)

    busy, describe_seconds, info_event, results = asyncio.run(run())
    assert busy > 0, "the clients finished before Describe: the test did not overlap"
    assert Info.is_type(info_event.type) and describe_seconds < 1.0
    for voice, events in results:
        assert not any(Error.is_type(e.type) for e in events), events
        assert_pcm_of(samples_of(events), expected[voice])


def test_disconnect_mid_stream_frees_the_worker(server, synth):
    frames_per_sentence = len(synth.synthesize("One two.", voice="mid-1")) // synth.hop_length + 1
    full_run = 150 * frames_per_sentence
    assert server.idle()
    before = server.pool.frames

    async def run():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Synthesize(LONG_TEXT, voice=SynthesizeVoice("mid-1")).event())
            assert AudioStart.is_type((await read(client)).type)
            assert AudioChunk.is_type((await read(client)).type)
        # leaving the block disconnects in the middle of the audio

    asyncio.run(run())
    assert server.idle(timeout=10.0), "the worker is still busy after the client left"
    generated = server.pool.frames - before
    assert 0 < generated < full_run // 2, (generated, full_run)
    assert AudioStart.is_type(asyncio.run(synthesize(server.port, "Next please."))[0].type)


def test_a_sentence_ends_by_the_models_stop_rule(stopping_model_dir):
    """A model that predicts the end after STOP_FRAMES frames (its max_frames is 5x that): the server's audio is
    exactly those frames, then AudioStop, and the worker is free again."""
    stopping = ServerThread(KalleSynthesizer.from_pretrained(stopping_model_dir), None, workers=1, queue_size=1)
    try:
        events = asyncio.run(synthesize(stopping.port, "Hello there."))
        assert AudioStart.is_type(events[0].type) and AudioStop.is_type(events[-1].type)
        assert samples_of(events).size == STOP_FRAMES * 1280 and stopping.idle()
    finally:
        stopping.close()


def test_full_queue_gets_a_busy_error(synth):
    small = ServerThread(synth, None, workers=1, queue_size=0)
    try:
        async def run():
            async with AsyncTcpClient("127.0.0.1", small.port) as first:
                await first.write_event(Synthesize(LONG_TEXT).event())
                assert AudioStart.is_type((await read(first)).type)  # the only worker is taken
                return await synthesize(small.port, TEXT)

        events = asyncio.run(run())
        assert error_code(events[0]) == "busy" and AudioStop.is_type(events[1].type)
        assert small.idle()
        assert AudioStart.is_type(asyncio.run(synthesize(small.port, TEXT))[0].type)
    finally:
        small.close()


# ---------------------------------------------------------------------------------------------- CLI
def start_cli(*options: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(INTEGRATIONS), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "wyoming_kalle", "--uri", f"tcp://127.0.0.1:{port}", *options]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), port


async def connect(process: subprocess.Popen, port: int) -> AsyncTcpClient:
    deadline = time.monotonic() + 120
    while True:
        try:
            client = AsyncTcpClient("127.0.0.1", port)
            await client.connect()
            return client
        except OSError:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "server did not start"
            await asyncio.sleep(0.2)


def test_cli_serves_int8_quietly_and_stops_on_sigterm(tiny_model_dir, voices_dir):
    """The real entry point: --device/--int8 reach the model, start-up logs only the server's own lines, and
    SIGTERM (docker stop) in the middle of a synthesis ends it like Ctrl-C: quickly, status 0, no traceback."""
    process, port = start_cli("--model", str(tiny_model_dir), "--voices-dir", str(voices_dir), "--voice",
                              "my-clone", "--no-streaming", "--samples-per-chunk", "1000", "--device", "cpu",
                              "--int8")
    try:
        async def run():
            client = await connect(process, port)
            try:
                await client.write_event(Describe().event())
                info = Info.from_event(await read(client))
                await client.write_event(Synthesize("Hi.").event())
                events = await read_until(client, {AudioStop().event().type})
                await client.write_event(Synthesize(LONG_TEXT).event())
                assert AudioStart.is_type((await read(client)).type)
                process.send_signal(signal.SIGTERM)
                started = time.monotonic()
                while process.poll() is None and time.monotonic() - started < TIMEOUT:
                    await asyncio.sleep(0.05)
                return info, events, time.monotonic() - started
            finally:
                await client.disconnect()

        info, events, stop_seconds = asyncio.run(run())
        output = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(TIMEOUT)

    assert not info.tts[0].supports_synthesize_streaming
    assert {"my-clone", "grandma"} <= {v.name for v in info.tts[0].voices}
    sizes = [len(e.payload) for e in events if AudioChunk.is_type(e.type)]
    assert sizes and all(size == 2000 for size in sizes[:-1]) and 0 < sizes[-1] <= 2000
    # --int8 reached the model: the audio is the int8 synthesizer's, which is not the float one's.
    voice = Voice.load(voices_dir / "my-clone.voice.pt")
    int8 = KalleSynthesizer.from_pretrained(tiny_model_dir, int8=True)
    float32 = KalleSynthesizer.from_pretrained(tiny_model_dir, int8=False)
    assert_pcm_of(samples_of(events), streamed(int8, "Hi.", voice=voice, seed=0))
    assert not is_pcm_of(samples_of(events), streamed(float32, "Hi.", voice=voice, seed=0))
    # SIGTERM: the running synthesis was cancelled (the long text would take far longer) and the exit was clean.
    assert process.returncode == 0, output
    assert stop_seconds < 10, (stop_seconds, output)
    assert "Traceback" not in output and "Server stopped" in output, output
    # Quiet start: the server's own INFO lines, none of onnxruntime's quantizer (it logs to the root logger).
    lines = output.strip().splitlines()
    assert "INFO:wyoming_kalle:Ready" in lines, output
    assert all(line.startswith(("INFO:wyoming_kalle:", "INFO:wyoming_kalle.")) for line in lines), output


def test_cli_refuses_devices_it_cannot_use(tiny_model_dir):
    import torch

    cases = [(["--device", "toaster"], "--device toaster"), (["--device", "meta", "--int8"], "--int8 is for")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA device"))
    for options, message in cases:
        process, _ = start_cli("--model", str(tiny_model_dir), *options)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 2 and message in output, (options, output)
        assert "Traceback" not in output


def test_cli_sigterm_while_loading_exits_like_ctrl_c(tiny_model_dir):
    """docker stop during the model load: status 0 and no traceback, as Ctrl-C (not killed by the signal)."""
    process, _ = start_cli("--model", str(tiny_model_dir), "--int8")
    try:
        seen = []
        for line in process.stdout:  # the first line is logged once the handler is installed, before loading
            seen.append(line)
            if "Loading model" in line:
                process.send_signal(signal.SIGTERM)
                break
        output = "".join(seen) + process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Traceback" not in output, (process.returncode, output)
