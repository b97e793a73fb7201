"""Run a blocking chunk generator in a worker thread and consume its chunks from asyncio.

Synthesis is CPU-bound torch code: on the event loop it would stall every other processor of the pipeline
(transport, VAD, STT) for the whole utterance. The worker thread produces chunks and hands each one to the
loop as soon as it exists, so streaming stays frame by frame. Stopping is cooperative: the generator receives
a ``threading.Event`` it checks between frames, because a thread cannot be cancelled from outside.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

from loguru import logger

from espnet_kalle.run_ahead import AsyncHandoff

T = TypeVar("T")


class ThreadedStream(Generic[T]):
    """Iterates ``produce(cancel)`` in a daemon thread; ``async for`` yields its items in order.

    The thread bridge is ``espnet_kalle.run_ahead.AsyncHandoff`` (items in order, the producer's exceptions
    re-raised in the consumer); this class owns the thread's lifetime. ``stop()`` asks the producer to finish
    before its next item and waits, without blocking the loop, until the thread has exited.
    """

    def __init__(self, produce: Callable[[threading.Event], Iterator[T]], *, name: str = "kalle-stream"):
        self._handoff: AsyncHandoff[T] = AsyncHandoff()
        self.cancel = self._handoff.cancel
        self._produce = produce
        self._loop = asyncio.get_running_loop()
        self._exited = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> ThreadedStream[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._handoff.run(lambda: self._produce(self.cancel))
        except Exception as error:  # noqa: BLE001 - closing the producer failed; its items are all delivered
            logger.debug(f"{self._thread.name}: closing the producer failed: {error}")
        finally:
            try:
                self._loop.call_soon_threadsafe(self._exited.set)
            except RuntimeError:
                pass

    def __aiter__(self) -> AsyncIterator[T]:
        return self._handoff

    async def stop(self, timeout: float = 2.0) -> bool:
        """Stop the producer before its next item; True once the thread is gone."""
        self.cancel.set()
        if self._thread.ident is None:  # never started
            return True
        try:
            await asyncio.wait_for(self._exited.wait(), timeout)
        except TimeoutError:
            logger.warning(f"{self._thread.name}: still running {timeout:.1f}s after stop was requested")
            return False
        self._thread.join(timeout=1.0)  # it has posted its last message: only returning is left
        return not self._thread.is_alive()
