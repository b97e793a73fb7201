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


def test_closing_the_consumer_stops_the_worker_and_runs_the_generators_cleanup():
    produced, cleaned_up = [], threading.Event()

    def items():
        try:
            for i in range(10_000):
                produced.append(i)
                time.sleep(0.001)
                yield i
        finally:
            cleaned_up.set()

    stream = run_ahead(items())
    assert next(stream) == 0
    stream.close()  # joins the worker
    assert cleaned_up.is_set()
    n = len(produced)
    time.sleep(0.05)
    assert len(produced) == n < 10_000
    assert not any(t.name == "run-ahead" for t in threading.enumerate())
