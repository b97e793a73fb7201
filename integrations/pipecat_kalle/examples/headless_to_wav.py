"""Speak text through a Pipecat pipeline and write what KalleTTSService streams into a WAV file.

No audio device, no network, no API key: a quick check that the model, the voice and the pipeline work.

    python integrations/pipecat_kalle/examples/headless_to_wav.py -o kalle.wav "Hello there." "How are you?"
    python integrations/pipecat_kalle/examples/headless_to_wav.py --model exp/my_model --voice low-1 --rate 16000 "Hi."
"""

from __future__ import annotations

import argparse
import asyncio
import wave
from pathlib import Path

from loguru import logger
from pipecat.frames.frames import CancelFrame, EndFrame, Frame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from pipecat_kalle import KalleTTSService


class WavWriter(FrameProcessor):
    """Appends the audio of every TTSAudioRawFrame to a 16-bit mono WAV and passes all frames on.

    It stands where ``transport.output()`` would be in a live agent, so it hears exactly what a speaker would.
    """

    def __init__(self, path: Path, sample_rate: int, **kwargs):
        super().__init__(**kwargs)
        self._path = path
        self._sample_rate = sample_rate
        self._wav: wave.Wave_write | None = None
        self.seconds = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self._write(frame)
        elif isinstance(frame, (EndFrame, CancelFrame)):
            self._close()
        await self.push_frame(frame, direction)

    def _write(self, frame: TTSAudioRawFrame) -> None:
        if frame.sample_rate != self._sample_rate or frame.num_channels != 1:
            raise ValueError(f"expected mono {self._sample_rate} Hz, "
                             f"got {frame.num_channels} ch {frame.sample_rate} Hz")
        if self._wav is None:
            self._wav = wave.open(str(self._path), "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(self._sample_rate)
        self._wav.writeframes(frame.audio)
        self.seconds += len(frame.audio) / 2 / self._sample_rate

    def _close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None

    async def cleanup(self):
        await super().cleanup()
        self._close()


async def speak_to_wav(texts: list[str], output: Path, model: str, voice: str | None, rate: int) -> float:
    """Run tts -> WavWriter over ``texts``; returns the seconds of audio written."""
    tts = KalleTTSService(model=model, voice=int(voice) if voice and voice.isdigit() else voice)
    writer = WavWriter(output, rate)
    worker = PipelineWorker(Pipeline([tts, writer]), params=PipelineParams(audio_out_sample_rate=rate))
    await worker.queue_frames([*(TTSSpeakFrame(text=t) for t in texts), EndFrame()])
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    return writer.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="+", help="sentences to speak, one utterance each")
    parser.add_argument("-o", "--output", type=Path, default=Path("kalle_pipecat.wav"))
    parser.add_argument("--model", default="mini-en", help='"mini-en" or a packed model dir')
    parser.add_argument("--voice", default=None, help="preset name, seed, or .voice.pt file (default: the model's)")
    parser.add_argument("--rate", type=int, default=24000, help="pipeline output sample rate")
    args = parser.parse_args(argv)
    seconds = asyncio.run(speak_to_wav(args.text, args.output, args.model, args.voice, args.rate))
    logger.info(f"wrote {seconds:.2f} s of audio to {args.output}")


if __name__ == "__main__":
    main()
