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

T = TypeVar("T")

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class ThreadedStream(Generic[T]):
    """Iterates ``produce(cancel)`` in a daemon thread; ``async for`` yields its items in order.

    The producer's exceptions are re-raised in the consumer. ``stop()`` asks the producer to finish before its
    next item and waits, without blocking the loop, until the thread has exited.
    """

    def __init__(self, produce: Callable[[threading.Event], Iterator[T]], *, name: str = "kalle-stream"):
        self.cancel = threading.Event()
        self._produce = produce
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._exited = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> ThreadedStream[T]:
        self._thread.start()
        return self

    def _post(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is waiting for this item any more
            self.cancel.set()

    def _run(self) -> None:
        items = None
        try:
            items = self._produce(self.cancel)
            for item in items:
                if self.cancel.is_set():
                    break
                self._post(item)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which decides
            self._post(_Failure(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # release the generator's resources here, not in some later GC
                try:
                    close()
                except Exception as error:  # noqa: BLE001
                    logger.debug(f"{self._thread.name}: closing the producer failed: {error}")
            self._post(_END)
            try:
                self._loop.call_soon_threadsafe(self._exited.set)
            except RuntimeError:
                pass

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def _items(self) -> AsyncIterator[T]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

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
