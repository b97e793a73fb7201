"""A local voice agent: microphone -> Whisper -> an OpenAI-compatible LLM -> KALL-E -> speakers.

Speech recognition and speech synthesis run on this machine; the LLM is any OpenAI-compatible endpoint
(OpenAI itself, or a local Ollama / vLLM / llama.cpp server). Talk over the bot to interrupt it: the VAD in
the user aggregator broadcasts an interruption and KalleTTSService stops generating within one 80 ms frame.

Setup (extras of pipecat-ai for the transport, STT and LLM; KalleTTSService comes with espnet-kalle[pipecat]):

    pip install "espnet-kalle[pipecat]" "pipecat-ai[local,whisper,openai]==1.14.0"
    export OPENAI_API_KEY=...                          # or, for Ollama:
    export OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_API_KEY=ollama LLM_MODEL=llama3.2:3b
    python integrations/pipecat_kalle/examples/voice_agent.py --voice low-1

Use headphones: the local transport has no echo cancellation, so the bot would hear (and interrupt) itself.
Whisper weights are downloaded by faster-whisper on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.whisper.stt import Model, WhisperSTTService
from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams
from pipecat.workers.runner import WorkerRunner

from pipecat_kalle import KalleTTSService

SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so answer in one to three short "
    "sentences of plain words: no lists, no markdown, no emoji."
)
GREETING = "Hello! What would you like to talk about?"


async def run_agent(model: str, voice: str | None, speed: float) -> None:
    transport = LocalAudioTransport(LocalAudioTransportParams(audio_in_enabled=True, audio_out_enabled=True))
    stt = WhisperSTTService(settings=WhisperSTTService.Settings(model=Model.DISTIL_MEDIUM_EN.value))
    llm = OpenAILLMService(
        api_key=os.getenv("OPENAI_API_KEY"),
        base_url=os.getenv("OPENAI_BASE_URL"),  # None: api.openai.com
        settings=OpenAILLMService.Settings(
            model=os.getenv("LLM_MODEL", "gpt-4o-mini"), system_instruction=SYSTEM_PROMPT
        ),
    )
    tts = KalleTTSService(
        model=model,
        voice=int(voice) if voice and voice.isdigit() else voice,
        settings=KalleTTSService.Settings(speed=speed),
    )

    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            user_aggregator,
            llm,
            tts,
            transport.output(),
            assistant_aggregator,
        ]
    )
    # The transport plays at the pipeline rate; KalleTTSService resamples its 16 kHz output to it.
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_out_sample_rate=24000, enable_metrics=True, enable_usage_metrics=True),
    )
    await worker.queue_frames([TTSSpeakFrame(text=GREETING)])

    runner = WorkerRunner()  # Ctrl+C ends the session
    await runner.add_workers(worker)
    await runner.run()


def main() -> None:
    parser = argparse.ArgumentParser(description="KALL-E voice agent on local audio")
    parser.add_argument("--model", default="mini-en", help='"mini-en" or a packed model dir')
    parser.add_argument("--voice", default=None, help="preset name, seed, or .voice.pt file (a cloned voice)")
    parser.add_argument("--speed", type=float, default=1.0, help="speaking rate, 0.25-4")
    args = parser.parse_args()
    asyncio.run(run_agent(args.model, args.voice, args.speed))


if __name__ == "__main__":
    main()
