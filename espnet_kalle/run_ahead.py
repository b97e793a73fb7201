"""Run a generator ahead in a worker thread, so that its work overlaps the work of whoever consumes it.

Streaming synthesis has two stages per 80 ms frame: the LM step that samples the frame and the decoder call that
turns frames into audio. On two cores they can run at the same time (PyTorch releases the GIL inside its ops):
the LM samples frame t+1 while the decoder renders frame t. Items, their order and any exception are exactly those
of the wrapped generator; closing the consumer stops the worker before its next item.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def run_ahead(items: Iterator[T], name: str = "run-ahead") -> Iterator[T]:
    """Yield the items of ``items``, which a daemon thread computes ahead of the consumer."""
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                ready.put(item)
                if stop.is_set():
                    break
        except BaseException as error:  # re-raised in the consumer's thread
            ready.put(_Failure(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # runs the generator's own clean-up in the thread that ran it
            ready.put(_DONE)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
