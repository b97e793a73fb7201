"""run_ahead: a generator computed in a worker thread yields the same items, errors and clean-up."""

import threading
import time

import pytest

from espnet_kalle.run_ahead import run_ahead


def test_items_and_order_are_those_of_the_generator():
    assert list(run_ahead(iter(range(100)))) == list(range(100))
    assert list(run_ahead(iter([]))) == []


def test_items_are_computed_in_another_thread_ahead_of_the_consumer():
    made_in, produced = [], threading.Event()

    def items():
        for i in range(3):
            made_in.append(threading.get_ident())
            yield i
        produced.set()

    stream = run_ahead(items())
    assert next(stream) == 0
    assert produced.wait(timeout=5)  # the rest exist before the consumer asks for them
    assert list(stream) == [1, 2]
    assert threading.get_ident() not in made_in


def test_an_error_reaches_the_consumer_after_the_items_before_it():
    def items():
        yield 1
        raise ValueError("prefix too long")

    got = []
    with pytest.raises(ValueError, match="prefix too long"):
        for item in run_ahead(items()):
            got.append(item)
    assert got == [1]


def slow_items(produced, cleaned_up):
    """10,000 items, 1 ms each, recorded in ``produced``; ``cleaned_up`` is set when the generator closes."""
    try:
        for i in range(10_000):
            produced.append(i)
            time.sleep(0.001)
            yield i
    finally:
        cleaned_up.set()


def test_closing_the_consumer_stops_the_worker_and_runs_the_generators_cleanup():
    produced, cleaned_up = [], threading.Event()
    stream = run_ahead(slow_items(produced, cleaned_up))
    assert next(stream) == 0
    stream.close()  # joins the worker
    assert cleaned_up.is_set()
    n = len(produced)
    time.sleep(0.05)
    assert len(produced) == n < 10_000
    assert not any(t.name == "run-ahead" for t in threading.enumerate())


def test_async_handoff_delivers_items_then_the_error_to_the_event_loop():
    """AsyncHandoff (the Pipecat and Wyoming side of the bridge): items in order, then the producer's error."""
    import asyncio

    from espnet_kalle.run_ahead import AsyncHandoff

    def items():
        yield from range(3)
        raise ValueError("prefix too long")

    async def consume():
        handoff = AsyncHandoff()
        worker = threading.Thread(target=handoff.run, args=(items,))
        worker.start()
        got = []
        with pytest.raises(ValueError, match="prefix too long"):
            async for item in handoff:
                got.append(item)
        worker.join(timeout=5)
        return got

    assert asyncio.run(consume()) == [0, 1, 2]


def test_async_handoff_stops_before_the_next_item_once_cancelled_and_cleans_up():
    import asyncio

    from espnet_kalle.run_ahead import AsyncHandoff

    produced, cleaned_up = [], threading.Event()

    async def consume():
        handoff = AsyncHandoff()
        worker = threading.Thread(target=handoff.run, args=(lambda: slow_items(produced, cleaned_up),))
        worker.start()
        async for item in handoff:
            if item == 2:
                handoff.cancel.set()
        worker.join(timeout=5)
        return worker.is_alive()

    assert asyncio.run(consume()) is False
    assert cleaned_up.is_set() and len(produced) < 100
