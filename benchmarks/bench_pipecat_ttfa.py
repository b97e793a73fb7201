"""Time to first audio frame through a Pipecat pipeline (KalleTTSService), on 2 CPU threads.

    python benchmarks/bench_pipecat_ttfa.py [--model tiny|mini-en|DIR] [--runs 20] [--threads 2]

TTFA is measured from queueing a ``TTSSpeakFrame`` at the pipeline's source to the first ``TTSAudioRawFrame``
reaching the processor after the TTS (where ``transport.output()`` would be). The row "synth.stream" is the
same first chunk straight from the synthesizer, so the difference is what Pipecat and the worker thread add.
RTF is generation time / audio time per utterance (below 1 keeps up with playback). Goal with mini-en: p50
TTFA <= 150 ms. ``--model tiny`` (the default until mini-en ships) is the random test model: it measures the
plumbing, not the model.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from loguru import logger
from pipecat.frames.frames import EndFrame, Frame, TTSAudioRawFrame, TTSSpeakFrame, TTSStoppedFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from espnet_kalle.synthesizer import KalleSynthesizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "integrations"))
from pipecat_kalle import KalleTTSService  # noqa: E402

TEXTS = [
    "Sure, I can help with that.",
    "The meeting moved to three o'clock tomorrow.",
    "Could you say that again, please?",
    "It is sunny and warm today.",
]


class AudioProbe(FrameProcessor):
    """Stamps the first audio frame of each utterance and counts its audio until TTSStoppedFrame."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first_audio: float | None = None
        self.last_audio: float | None = None
        self.samples = 0
        self.stopped = asyncio.Event()

    def reset(self) -> None:
        self.first_audio = self.last_audio = None
        self.samples = 0
        self.stopped.clear()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            now = time.perf_counter()
            self.first_audio = self.first_audio or now
            self.last_audio = now
            self.samples += len(frame.audio) // 2
        elif isinstance(frame, TTSStoppedFrame):
            self.stopped.set()
        await self.push_frame(frame, direction)


class PipelineUnderTest:
    """A running ``tts -> probe`` pipeline that speaks one utterance at a time."""

    def __init__(self, synth: KalleSynthesizer, rate: int):
        self.rate = rate
        self.tts = KalleTTSService(model=synth, sample_rate=rate, stop_frame_timeout_s=0.5)
        self.probe = AudioProbe()
        self.worker = PipelineWorker(Pipeline([self.tts, self.probe]),
                                     params=PipelineParams(audio_out_sample_rate=rate), cancel_on_idle_timeout=False)
        self.runner = WorkerRunner(handle_sigint=False)
        self._running: asyncio.Task | None = None

    async def start(self) -> None:
        started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def _started(worker, frame):
            started.set()

        await self.runner.add_workers(self.worker)
        self._running = asyncio.create_task(self.runner.run())
        await asyncio.wait_for(started.wait(), 30)

    async def speak(self, text: str) -> tuple[float, float]:
        """TTFA (s) and RTF of one utterance."""
        self.probe.reset()
        sent = time.perf_counter()
        await self.worker.queue_frame(TTSSpeakFrame(text=text))
        await asyncio.wait_for(self.probe.stopped.wait(), 120)
        return self.probe.first_audio - sent, (self.probe.last_audio - sent) / (self.probe.samples / self.rate)

    async def stop(self) -> None:
        await self.worker.queue_frame(EndFrame())
        await self._running


def direct_once(synth: KalleSynthesizer, text: str) -> tuple[float, float]:
    """The same utterance straight from ``synth.stream`` (run in a thread, like the service does)."""
    start = time.perf_counter()
    first, samples = None, 0
    for chunk in synth.stream(text):
        first = first or time.perf_counter()
        samples += chunk.size
    return first - start, (time.perf_counter() - start) / (samples / synth.sample_rate)


async def measure(synth: KalleSynthesizer, runs: int, warmup: int) -> dict[str, list[tuple[float, float]]]:
    """Round-robin over the paths, so load from other processes hits them all alike."""
    pipelines = {f"pipeline, {rate // 1000} kHz out": PipelineUnderTest(synth, rate) for rate in (16000, 24000)}
    for pipeline in pipelines.values():
        await pipeline.start()
    results: dict[str, list[tuple[float, float]]] = {"synth.stream (no pipeline)": []}
    results.update({name: [] for name in pipelines})
    for index in range(warmup + runs):
        text = TEXTS[index % len(TEXTS)]
        direct = await asyncio.to_thread(direct_once, synth, text)
        spoken = {name: await pipeline.speak(text) for name, pipeline in pipelines.items()}
        if index >= warmup:
            results["synth.stream (no pipeline)"].append(direct)
            for name, value in spoken.items():
                results[name].append(value)
    for pipeline in pipelines.values():
        await pipeline.stop()
    return results


def load(model: str) -> KalleSynthesizer:
    if model != "tiny":
        return KalleSynthesizer.from_pretrained(model)
    sys.path.insert(0, str(ROOT / "tests"))
    from model_factory import build_tiny_model_dir

    return KalleSynthesizer.from_pretrained(build_tiny_model_dir(Path(tempfile.mkdtemp(prefix="kalle_bench_"))))


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help='"tiny" (random test model), "mini-en" or a model dir')
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    synth = load(args.model)
    results = asyncio.run(measure(synth, args.runs, args.warmup))

    print(f"model: {args.model} ({synth.name}), torch threads: {args.threads}, runs: {args.runs}")
    print(f"{'path':<28} {'TTFA p50 ms':>11} {'TTFA p95 ms':>11} {'RTF p50':>8} {'+p50 vs synth':>13}")
    base = statistics.median(t for t, _ in results["synth.stream (no pipeline)"])
    for name, values in results.items():
        ttfa = [t for t, _ in values]
        p50 = statistics.median(ttfa)
        print(f"{name:<28} {1000 * p50:11.1f} {1000 * percentile(ttfa, 95):11.1f} "
              f"{statistics.median(r for _, r in values):8.3f} {1000 * (p50 - base):+12.1f}")


if __name__ == "__main__":
    main()
