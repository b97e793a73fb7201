"""``python -m wyoming_kalle --uri tcp://0.0.0.0:10200``: a Wyoming TTS server for Home Assistant.

Options follow wyoming-piper's where they mean the same thing (--uri, --voice, --zeroconf, --samples-per-chunk,
--no-streaming, --debug, --log-format, --version); --device and --int8 are kalle-tts's. SIGTERM (docker stop,
systemd) stops the server like Ctrl-C: running syntheses are cancelled and the process exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from wyoming.server import AsyncServer, AsyncTcpServer

from . import __version__
from .handler import HandlerSettings, KalleEventHandler
from .synthesis import SynthesisOptions, SynthesisPool
from .voices import build_info, load_voice_book

PACKAGE = "wyoming_kalle"  # every logger of this server is below it (this module's __name__ may be __main__)
_LOGGER = logging.getLogger(PACKAGE)

if TYPE_CHECKING:
    import torch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wyoming_kalle",
                                     description="A Wyoming text-to-speech server (Home Assistant) for KALL-E.")
    parser.add_argument("--uri", default="stdio://", help="unix:// or tcp:// (e.g. tcp://0.0.0.0:10200)")
    parser.add_argument("--model", default="mini-en", help="registered model name or packed model dir")
    parser.add_argument("--voice", help="default voice for requests that name none (default: the model's)")
    parser.add_argument("--voices-dir", type=Path,
                        help="voices to offer besides the presets: NAME/ref.wav + NAME/ref.txt (a recording and its "
                             "transcript, cloned at start) and saved cloned/adapted voices (*.voice.pt)")
    parser.add_argument("--zeroconf", nargs="?", const="kalle",
                        help="enable discovery over zeroconf with optional name (default: kalle)")
    parser.add_argument("--samples-per-chunk", type=int, default=None,
                        help="samples per AudioChunk (default: one 80 ms frame, 1280 at 16 kHz)")
    parser.add_argument("--no-streaming", action="store_true",
                        help="do not offer streaming synthesis (SynthesizeStart/Chunk/Stop)")
    parser.add_argument("--max-text-chars", type=int, default=2000, help="longest text per request")
    parser.add_argument("--workers", type=int, default=1, help="requests synthesized at the same time")
    parser.add_argument("--queue-size", type=int, default=8,
                        help="requests that may wait for a worker; more get a 'busy' Error")
    parser.add_argument("--device", default="cpu", help="torch device to run the model on (cpu, cuda, cuda:1)")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                        help="generate with int8 LM weights (faster on CPU; default: what the model dir says)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, all cores)")
    parser.add_argument("--speed", type=float, default=1.0, help="speaking rate (0.25-4)")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (model default)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (same text, same audio)")
    parser.add_argument("--debug", action="store_true", help="log DEBUG messages (of every library)")
    parser.add_argument("--log-format", default=logging.BASIC_FORMAT, help="format for log messages")
    parser.add_argument("--version", action="version", version=__version__, help="print version and exit")
    return parser


async def main(argv: Optional[List[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.debug, args.log_format)
    _LOGGER.debug(args)
    if args.max_text_chars < 1 or args.workers < 1 or args.queue_size < 0:
        parser.error("--max-text-chars and --workers must be >= 1, --queue-size >= 0")
    if args.samples_per_chunk is not None and args.samples_per_chunk < 1:
        parser.error("--samples-per-chunk must be >= 1")
    if not 0.25 <= args.speed <= 4.0:
        parser.error("--speed must be within [0.25, 4]")

    import torch

    from espnet_kalle.synthesizer import KalleSynthesizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(parser, args.device, args.int8)
    _LOGGER.info("Loading model %s on %s", args.model, device)
    try:
        synth = KalleSynthesizer.from_pretrained(args.model, device=str(device), int8=args.int8)
        book = load_voice_book(synth, args.voices_dir, args.voice)
    except (OSError, ValueError, KeyError) as err:  # a wrong --model/--voice/--voices-dir: say so, no traceback
        parser.error(str(err))
    info = build_info(book, synth.name, streaming=not args.no_streaming)
    pool = SynthesisPool(synth, args.workers, args.queue_size,
                         SynthesisOptions(temperature=args.temperature, speed=args.speed, seed=args.seed))
    settings = HandlerSettings(samples_per_chunk=args.samples_per_chunk, max_text_chars=args.max_text_chars,
                               streaming=not args.no_streaming)
    _LOGGER.info("Model %s on %s%s; voices: %s (default %s)", synth.name, device,
                 " with int8 LM weights" if synth.int8 else "", ", ".join(sorted(book.voices)), book.default)

    server = AsyncServer.from_uri(args.uri)
    if args.zeroconf:
        if not isinstance(server, AsyncTcpServer):
            parser.error("--zeroconf requires a tcp:// uri")
        await _register_zeroconf(args.zeroconf, server)

    _LOGGER.info("Ready")
    server_task = asyncio.create_task(server.run(partial(KalleEventHandler, info, book, pool, settings)))
    # wyoming >= 1.10 stops its server on SIGTERM by itself; older ones leave it to this handler.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server_task.cancel)
    try:
        await server_task
    except asyncio.CancelledError:
        pass
    finally:
        pool.close(wait=True)  # running syntheses stop before their next frame
        _LOGGER.info("Server stopped")


def _device(parser: argparse.ArgumentParser, name: str, int8: Optional[bool]) -> torch.device:
    """``--device`` checked before loading: a device this machine lacks is a usage error, not a traceback."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as err:
        parser.error(f"--device {name}: {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {name}: torch finds no CUDA device on this machine")
    if int8 and device.type != "cpu":
        parser.error("--int8 is for --device cpu (int8 weights speed up CPU generation only)")
    return device


def configure_logging(debug: bool, log_format: str) -> None:
    """This server's INFO lines (loading, voices, Ready) without the INFO chatter of the libraries below it
    (onnxruntime's quantizer logs to the root logger); ``--debug`` shows everything."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format=log_format)
    if not debug:
        logging.getLogger(PACKAGE).setLevel(logging.INFO)


async def _register_zeroconf(name: str, server: AsyncTcpServer) -> None:
    try:
        from wyoming.zeroconf import HomeAssistantZeroconf
    except ImportError as err:
        raise SystemExit(f"--zeroconf needs the zeroconf package: pip install 'wyoming[zeroconf]' ({err})") from err
    # A wildcard bind address is not reachable: let HomeAssistantZeroconf find this host's address.
    host = None if server.host in ("0.0.0.0", "", "::") else server.host
    await HomeAssistantZeroconf(name=name, port=server.port, host=host).register_server()
    _LOGGER.debug("Zeroconf discovery enabled")


def run() -> None:
    """Entry point: Ctrl-C and SIGTERM (docker stop, systemd) end the server the same quiet way, status 0."""
    signal.signal(signal.SIGTERM, _interrupt)  # until the server runs: a SIGTERM while loading, like Ctrl-C
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    run()
