"""A voice agent in Pipecat's runner style: browser (WebRTC), Daily or Twilio -> Whisper -> an LLM -> KALL-E.

Speech recognition and speech synthesis run on this machine; the LLM is any OpenAI-compatible endpoint (OpenAI
itself, or a local Ollama / vLLM / llama.cpp server). Talk over the bot to interrupt it: the VAD in the user
aggregator broadcasts an interruption and KalleTTSService stops generating within one 80 ms frame.

Setup (pipecat-ai extras for the runner, the transports, STT and LLM; KalleTTSService comes with
espnet-kalle[pipecat]):

    pip install "espnet-kalle[pipecat]" "pipecat-ai[runner,webrtc,daily,whisper,openai,silero]>=1.14,<2"
    export OPENAI_API_KEY=...                          # or, for Ollama:
    export OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_API_KEY=ollama LLM_MODEL=llama3.2:3b
    export KALLE_VOICE=low-1                           # optional: a preset, a seed, or a .voice.pt file
    python integrations/pipecat_kalle/examples/voice_agent.py            # then open http://localhost:7860/client
    python integrations/pipecat_kalle/examples/voice_agent.py -t daily   # or a Daily room (DAILY_API_KEY)
    python integrations/pipecat_kalle/examples/voice_agent.py -t twilio -x YOUR_PROXY_HOST

The optional services are imported where they are built, so the file also loads with pipecat-ai alone (its
tests build ``create_tts()`` in a pipeline). Whisper weights are downloaded by faster-whisper on first use.
"""

from __future__ import annotations

import os

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.runner.types import RunnerArguments
from pipecat.runner.utils import create_transport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.workers.runner import WorkerRunner

from pipecat_kalle import KalleTTSService

SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so answer in one to three short "
    "sentences of plain words: no lists, no markdown, no emoji."
)


def _daily_params():
    from pipecat.transports.daily.transport import DailyParams

    return DailyParams(audio_in_enabled=True, audio_out_enabled=True)


def _twilio_params():
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

    return FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True)


# Functions, as in Pipecat's examples: only the selected transport's parameters are built.
transport_params = {
    "daily": _daily_params,
    "twilio": _twilio_params,
    "webrtc": lambda: TransportParams(audio_in_enabled=True, audio_out_enabled=True),
}


def create_tts() -> KalleTTSService:
    """KALL-E from the environment: KALLE_MODEL ("mini-en" or a packed model dir), KALLE_VOICE, KALLE_SPEED."""
    voice = os.getenv("KALLE_VOICE") or None
    return KalleTTSService(
        model=os.getenv("KALLE_MODEL", "mini-en"),
        voice=int(voice) if voice and voice.isdigit() else voice,
        settings=KalleTTSService.Settings(speed=float(os.getenv("KALLE_SPEED", "1.0"))),
    )


def create_stt():
    from pipecat.services.whisper.stt import Model, WhisperSTTService

    return WhisperSTTService(settings=WhisperSTTService.Settings(model=Model.DISTIL_MEDIUM_EN.value))


def create_llm():
    from pipecat.services.openai.llm import OpenAILLMService

    return OpenAILLMService(
        api_key=os.getenv("OPENAI_API_KEY"),
        base_url=os.getenv("OPENAI_BASE_URL"),  # None: api.openai.com
        settings=OpenAILLMService.Settings(
            model=os.getenv("LLM_MODEL", "gpt-4o-mini"), system_instruction=SYSTEM_PROMPT
        ),
    )


async def run_bot(transport: BaseTransport, runner_args: RunnerArguments):
    logger.info("Starting bot")
    stt, llm, tts = create_stt(), create_llm(), create_tts()

    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()),
    )

    pipeline = Pipeline(
        [
            transport.input(),  # Transport user input
            stt,
            user_aggregator,  # User responses
            llm,  # LLM
            tts,  # KALL-E, resampled to the transport's output rate
            transport.output(),  # Transport bot output
            assistant_aggregator,  # Assistant spoken responses
        ]
    )

    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        idle_timeout_secs=runner_args.pipeline_idle_timeout_secs,
    )

    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        logger.info("Client connected")
        context.add_message({"role": "developer", "content": "Please introduce yourself to the user."})
        await worker.queue_frames([LLMRunFrame()])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        logger.info("Client disconnected")
        await runner.cancel()

    await runner.run()


async def bot(runner_args: RunnerArguments):
    """Main bot entry point compatible with Pipecat Cloud and Pipecat's development runner."""
    transport = await create_transport(runner_args, transport_params)
    await run_bot(transport, runner_args)


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
