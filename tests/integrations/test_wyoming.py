"""The Wyoming server against the real wyoming client on loopback, with the tiny random model.

The server runs on its own event loop in a thread (as if it were another process) so the tests can look at its
worker pool; one test starts the real ``python -m wyoming_kalle`` entry point.
"""

from __future__ import annotations

import asyncio
import os
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
    Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice,
)

from espnet_kalle.synthesizer import KalleSynthesizer  # noqa: E402
from espnet_kalle.voice import Voice  # noqa: E402
from wyoming_kalle.handler import HandlerSettings, KalleEventHandler  # noqa: E402
from wyoming_kalle.synthesis import SynthesisPool  # noqa: E402
from wyoming_kalle.voices import build_info, load_voice_book  # noqa: E402

TIMEOUT = 30.0
TEXT = "Hello there. How are you?"
LONG_TEXT = " ".join(["One two."] * 150)  # ~2500 frames: long enough to disconnect in the middle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """The real server (AsyncTcpServer + KalleEventHandler) on its own event loop."""

    def __init__(self, synth: KalleSynthesizer, voices_dir: Optional[Path], workers: int, queue_size: int,
                 settings: HandlerSettings = HandlerSettings()):
        self.book = book = load_voice_book(synth, voices_dir)
        self.pool = SynthesisPool(synth, workers, queue_size)
        self.port = free_port()
        self.server = AsyncTcpServer("127.0.0.1", self.port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
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
    """A saved cloned voice, as ``synth.clone(...).save(...)`` would leave it."""
    directory = tmp_path_factory.mktemp("saved_voices")
    speaker = synth.voice(7).speaker
    Voice("my-clone", speaker=speaker, description="cloned from me.wav").save(directory / "my-clone.voice.pt")
    return directory


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


def pcm(wav: np.ndarray) -> np.ndarray:
    return (np.clip(wav, -1, 1) * 32767).round().astype("<i2")


def streamed(synth, text: str, **options) -> np.ndarray:
    """What ``KalleSynthesizer.stream`` gives, the server's source (``synthesize`` decodes in other blocks, which
    can move a sample by one step of 16-bit PCM)."""
    return np.concatenate(list(synth.stream(text, **options)))


async def synthesize(port: int, text: str, voice: Optional[str] = None) -> List[Event]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text, voice=SynthesizeVoice(voice) if voice else None).event())
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
    assert {v.name for v in program.voices} == {"high-1", "low-1", "mid-1", "my-clone"}
    for voice in program.voices:  # what Home Assistant reads: installed voices, their languages, a label
        assert voice.installed and voice.languages == ["en_US"]
        assert voice.description and voice.attribution.name and voice.version
    assert next(v for v in program.voices if v.name == "my-clone").description == "my-clone (cloned)"


def test_synthesize_streams_the_library_audio(server, synth):
    events = asyncio.run(synthesize(server.port, TEXT, "low-1"))
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (16000, 2, 1)
    assert AudioStop.is_type(events[-1].type)
    chunks = [e for e in events if AudioChunk.is_type(e.type)]
    assert len(chunks) > 1 and all(len(c.payload) == 2 * synth.hop_length for c in chunks)  # one chunk per frame
    expected = pcm(streamed(synth, TEXT, voice="low-1", seed=0))
    audio = samples_of(events)
    assert audio.shape == expected.shape
    assert np.array_equal(audio, expected)


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
    expected = pcm(streamed(synth, full, voice="mid-1", seed=0))
    audio = samples_of(events)
    assert audio.shape == expected.shape
    assert np.array_equal(audio, expected)


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
    expected = {v: pcm(streamed(synth, text, voice=server.book.voices[v])) for v in voices}

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
        assert np.array_equal(samples_of(events), expected[voice])


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
def test_cli_serves_describe_and_chunks(tiny_model_dir, voices_dir):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(INTEGRATIONS), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "wyoming_kalle", "--uri", f"tcp://127.0.0.1:{port}", "--model",
               str(tiny_model_dir), "--voices-dir", str(voices_dir), "--voice", "my-clone", "--no-streaming",
               "--samples-per-chunk", "1000"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async def run():
            deadline = time.monotonic() + 120
            while True:
                try:
                    client = AsyncTcpClient("127.0.0.1", port)
                    await client.connect()
                    break
                except OSError:
                    assert process.poll() is None, process.stdout.read().decode()
                    assert time.monotonic() < deadline, "server did not start"
                    await asyncio.sleep(0.2)
            try:
                await client.write_event(Describe().event())
                info = Info.from_event(await read(client))
                await client.write_event(Synthesize("Hi.").event())
                return info, await read_until(client, {AudioStop().event().type})
            finally:
                await client.disconnect()

        info, events = asyncio.run(run())
        assert not info.tts[0].supports_synthesize_streaming
        assert "my-clone" in {v.name for v in info.tts[0].voices}
        sizes = [len(e.payload) for e in events if AudioChunk.is_type(e.type)]
        assert sizes and all(size == 2000 for size in sizes[:-1]) and 0 < sizes[-1] <= 2000
    finally:
        process.terminate()
        process.wait(TIMEOUT)
