"""The store's thread hop (proxy/store/thread.py): results, exceptions, order, cancellation
and stopping, on a real thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from proxy.store.thread import DbThread


async def test_runs_on_its_own_thread_and_returns_the_result() -> None:
    worker = DbThread("test-store")
    try:
        name = await worker.call(lambda: threading.current_thread().name)
        assert name == "test-store" and name != threading.current_thread().name
        assert await worker.call(lambda a, b: a + b, 2, 3) == 5
    finally:
        worker.stop()


async def test_an_exception_comes_back_to_the_caller() -> None:
    worker = DbThread("test-store")
    try:
        with pytest.raises(ZeroDivisionError):
            await worker.call(lambda: 1 / 0)
        assert await worker.call(lambda: "still serving") == "still serving"
    finally:
        worker.stop()


async def test_jobs_run_one_at_a_time_in_order() -> None:
    worker = DbThread("test-store")
    seen: list[int] = []
    running = []

    def job(i: int) -> int:
        running.append(i)
        assert len(running) == 1, "two jobs at once"
        time.sleep(0.001)
        seen.append(i)
        running.pop()
        return i

    try:
        assert await asyncio.gather(*(worker.call(job, i) for i in range(50))) == list(range(50))
        assert seen == list(range(50))
    finally:
        worker.stop()


async def test_a_cancelled_caller_does_not_break_the_thread() -> None:
    worker = DbThread("test-store")
    gate = threading.Event()
    try:
        task = asyncio.create_task(worker.call(gate.wait, 5))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()  # the job finishes after its caller has gone: its answer is dropped
        assert await worker.call(lambda: 42) == 42
    finally:
        worker.stop()


async def test_stop_finishes_queued_jobs_then_refuses_new_ones() -> None:
    worker = DbThread("test-store")
    done: list[int] = []
    futures = [asyncio.ensure_future(worker.call(done.append, i)) for i in range(5)]
    await asyncio.sleep(0)  # let the calls queue their jobs
    worker.stop()
    assert done == [0, 1, 2, 3, 4]
    await asyncio.gather(*futures)
    with pytest.raises(RuntimeError, match="has stopped"):
        await worker.call(lambda: None)


def test_a_job_finishing_after_its_loop_closed_is_dropped_quietly() -> None:
    worker = DbThread("test-store")
    gate = threading.Event()
    left: list[asyncio.Future[object]] = []  # held here: the test is that the job outlives its loop

    async def leave_a_job_behind() -> None:
        left.append(asyncio.ensure_future(worker.call(gate.wait, 5)))
        await asyncio.sleep(0.01)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(leave_a_job_behind())
    loop.close()
    gate.set()
    worker.stop()  # the thread got RuntimeError from the closed loop and went on to the stop
    assert not worker._thread.is_alive()
