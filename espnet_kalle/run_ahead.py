"""Hand a generator's items from a worker thread to their consumer: the one thread bridge of the project.

Synthesis is CPU-bound torch code that yields one 80 ms frame at a time. Three places run it in a worker thread:
the synthesizer samples the next frames while the calling thread decodes (``run_ahead``, a plain iterator; PyTorch
releases the GIL inside its ops, so on two cores LM and decoder overlap), and the Pipecat service and the Wyoming
server keep it off their event loop (``AsyncHandoff``, an async iterator fed with ``call_soon_threadsafe``).
Both ends behave the same way: items in order, the producer's exception re-raised in the consumer after the items
before it, the generator closed in the thread that ran it, and a stop request honoured before the next item.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from typing import AsyncIterator, Callable, Generic, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def pump(produce: Callable[[], Iterable[T]], post: Callable[[object], None], stop: threading.Event) -> None:
    """The worker's side of every bridge: ``post`` each item ``produce()`` yields, then its exception (if any),
    then the end mark; stop before the next item once ``stop`` is set. Runs in the worker thread."""
    items = None
    try:
        items = produce()
        for item in items:
            if stop.is_set():
                break
            post(item)
    except BaseException as error:  # noqa: BLE001 - re-raised in the consumer's thread
        post(_Failure(error))
    finally:
        try:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # runs the generator's own clean-up in the thread that ran it
        finally:
            post(_END)  # even if the clean-up failed: the consumer must not wait forever


def _unwrap(item: object) -> object:
    """The consumer's side: an item, or the end mark; a failure is raised."""
    if isinstance(item, _Failure):
        raise item.error
    return item


def run_ahead(items: Iterator[T], name: str = "run-ahead") -> Iterator[T]:
    """Yield the items of ``items``, which a daemon thread computes ahead of the consumer."""
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()
    worker = threading.Thread(target=pump, args=(lambda: items, ready.put, stop), name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = _unwrap(ready.get())
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()


class AsyncHandoff(Generic[T]):
    """The event loop's end of a worker thread: ``run(produce)`` in the thread, ``async for`` on the loop.

    ``cancel`` is the stop request the producer honours before its next item (pass it on to code that can stop
    sooner, e.g. ``KalleSynthesizer.stream``). Items posted after the loop has closed are dropped and cancel it.
    """

    def __init__(self, loop: Optional[asyncio.AbstractEventLoop] = None):
        self.cancel = threading.Event()
        self._loop = loop or asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()  # unbounded: a request is bounded by its text

    def post(self, item: object) -> None:
        """Hand one item to the loop (from any thread)."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody will read this
            self.cancel.set()

    def fail(self, error: BaseException) -> None:
        """End the iteration with ``error`` (from any thread), e.g. for a job dropped before it ran."""
        self.post(_Failure(error))

    def run(self, produce: Callable[[], Iterable[T]]) -> None:
        """Iterate ``produce()`` in the calling (worker) thread, handing every item to the loop."""
        pump(produce, self.post, self.cancel)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        item = _unwrap(await self._queue.get())
        if item is _END:
            raise StopAsyncIteration
        return item  # type: ignore[return-value]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
