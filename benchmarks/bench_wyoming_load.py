"""Wyoming server under load: N concurrent clients on loopback, time to first audio chunk, errors, Describe latency.

    python benchmarks/bench_wyoming_load.py [--clients 1 8] [--rounds 3] [--workers 2] [--queue-size 8]
        [--model mini-en|DIR|random] [--uri tcp://HOST:PORT] [--stream]

Without ``--uri`` the server runs in this process on its own event loop (as ``python -m wyoming_kalle`` would);
``--model random`` builds the tests' tiny random model (speed of the plumbing, not of a real model). Every client
sends ``--rounds`` requests one after another; a separate client asks Describe every 100 ms meanwhile, because
Home Assistant gives up on a server whose Info takes more than 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "integrations"))  # wyoming_kalle, when not installed with the [wyoming] extra

from wyoming.audio import AudioChunk, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.info import Describe  # noqa: E402
from wyoming.server import AsyncTcpServer  # noqa: E402
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped  # noqa: E402

TEXT = "Turning on the kitchen lights. The temperature outside is twelve degrees."


@dataclass
class Result:
    ttfc: List[float] = field(default_factory=list)  # seconds from request to first AudioChunk
    total: List[float] = field(default_factory=list)
    audio_seconds: float = 0.0
    errors: List[str] = field(default_factory=list)
    describe: List[float] = field(default_factory=list)


def start_server(model: str, workers: int, queue_size: int) -> Tuple[str, int, object]:
    """The real server on a thread with its own event loop; returns host, port and the pool."""
    import socket

    from espnet_kalle.synthesizer import KalleSynthesizer
    from wyoming_kalle.handler import HandlerSettings, KalleEventHandler
    from wyoming_kalle.synthesis import SynthesisPool
    from wyoming_kalle.voices import build_info, load_voice_book

    if model == "random":
        sys.path.insert(0, str(ROOT / "tests"))
        from model_factory import build_tiny_model_dir

        model = str(build_tiny_model_dir(Path(tempfile.mkdtemp(prefix="kalle-bench-"))))
    synth = KalleSynthesizer.from_pretrained(model)
    book = load_voice_book(synth)
    pool = SynthesisPool(synth, workers, queue_size)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = AsyncTcpServer("127.0.0.1", port)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    factory = partial(KalleEventHandler, build_info(book, synth.name), book, pool, HandlerSettings())
    asyncio.run_coroutine_threadsafe(server.start(factory), loop).result(60)
    return "127.0.0.1", port, pool


async def one_request(host: str, port: int, text: str, stream: bool, result: Result) -> None:
    started = time.perf_counter()
    first: Optional[float] = None
    samples = 0
    try:
        async with AsyncTcpClient(host, port) as client:
            if stream:
                await client.write_event(SynthesizeStart().event())
                for word in text.split(" "):
                    await client.write_event(SynthesizeChunk(word + " ").event())
                await client.write_event(Synthesize(text).event())
                await client.write_event(SynthesizeStop().event())
            else:
                await client.write_event(Synthesize(text).event())
            done = SynthesizeStopped if stream else AudioStop
            while True:
                event = await client.read_event()
                if event is None:
                    result.errors.append("disconnected")
                    return
                if AudioChunk.is_type(event.type):
                    first = first or time.perf_counter()
                    chunk = AudioChunk.from_event(event)
                    samples += len(chunk.audio) // chunk.width
                    rate = chunk.rate
                elif Error.is_type(event.type):
                    result.errors.append(Error.from_event(event).code or "error")
                elif done.is_type(event.type):
                    break
    except OSError as err:
        result.errors.append(type(err).__name__)
        return
    if first is not None:
        result.ttfc.append(first - started)
        result.total.append(time.perf_counter() - started)
        result.audio_seconds += samples / rate


async def describe_probe(host: str, port: int, stop: asyncio.Event, result: Result) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with AsyncTcpClient(host, port) as client:
            await client.write_event(Describe().event())
            await client.read_event()
        result.describe.append(time.perf_counter() - started)
        await asyncio.sleep(0.1)


async def run_load(host: str, port: int, clients: int, rounds: int, text: str, stream: bool) -> Tuple[Result, float]:
    result = Result()
    stop = asyncio.Event()
    probe = asyncio.create_task(describe_probe(host, port, stop, result))

    async def client() -> None:
        for _ in range(rounds):
            await one_request(host, port, text, stream, result)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    stop.set()
    await probe
    return result, elapsed


def pct(values: List[float], q: float) -> str:
    return f"{np.percentile(values, q):.3f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[8], help="concurrent clients (one row each)")
    parser.add_argument("--rounds", type=int, default=3, help="requests per client")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--stream", action="store_true", help="streaming synthesis, word by word like an LLM")
    parser.add_argument("--uri", help="an already running server (tcp://host:port); default: start one here")
    parser.add_argument("--model", default="mini-en", help="model for the in-process server (or 'random')")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the in-process server")
    args = parser.parse_args()

    if args.uri:
        host, port = args.uri.removeprefix("tcp://").rsplit(":", 1)
        port, workers = int(port), "?"
    else:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        host, port, _ = start_server(args.model, args.workers, args.queue_size)
        workers = str(args.workers)
    asyncio.run(run_load(host, port, 1, 1, args.text, args.stream))  # warm-up

    mode = "stream" if args.stream else "synthesize"
    print(f"mode: {mode}, rounds per client: {args.rounds}, queue size: {args.queue_size}, "
          f"text: {len(args.text)} chars")
    print(f"{'clients':>7} {'workers':>7} {'requests':>8} {'errors':>6} {'ttfc p50':>8} {'ttfc p95':>8} "
          f"{'total p50':>9} {'total p95':>9} {'audio/wall':>10} {'describe p50':>12} {'describe max':>12}")
    for clients in args.clients:
        result, elapsed = asyncio.run(run_load(host, port, clients, args.rounds, args.text, args.stream))
        requests = clients * args.rounds
        errors = f"{len(result.errors)}" + (f" ({','.join(sorted(set(result.errors)))})" if result.errors else "")
        print(f"{clients:7d} {workers:>7} {requests:8d} {errors:>6} {pct(result.ttfc, 50):>8} "
              f"{pct(result.ttfc, 95):>8} {pct(result.total, 50):>9} {pct(result.total, 95):>9} "
              f"{result.audio_seconds / elapsed:9.2f}x "
              f"{pct(result.describe, 50):>12} {max(result.describe, default=0):12.3f}")


if __name__ == "__main__":
    main()
