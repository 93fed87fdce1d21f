"""Long jobs: the time left comes from the steps measured so far (an injected clock), and a cancelled job
stops at its next check while later jobs wait for it to finish its step."""

from __future__ import annotations

import threading
import time

import pytest

from backends import job_control as jobs


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_time_left_is_measured_from_the_items_done():
    clock = Clock()
    eta = jobs.Eta(12, clock=clock)
    assert eta.seconds_left() is None and eta.describe() == ""  # nothing measured yet: no promise
    clock.now += 7.0  # the first item carries one-time costs
    eta.update(1)
    assert eta.seconds_per_item() == pytest.approx(7.0) and eta.seconds_left() == pytest.approx(77.0)
    clock.now += 4.0
    eta.update(2)
    clock.now += 4.0
    eta.update(3)
    # From then on the rate is read between the first and the latest item: 4 s, not (7 + 4 + 4) / 3.
    assert eta.seconds_per_item() == pytest.approx(4.0)
    assert eta.seconds_left() == pytest.approx(36.0) and eta.describe() == "about 36 s left"
    clock.now += 40.0  # the machine got busy: the estimate follows
    eta.update(4)
    assert eta.seconds_per_item() == pytest.approx(16.0) and eta.describe() == "about 2 min left"


def test_resumed_job_measures_only_its_own_items():
    clock = Clock()
    eta = jobs.Eta(10, clock=clock, done=6)  # a pool that already holds 6 fakes
    clock.now += 3.0
    eta.update(7)
    assert eta.seconds_per_item() == pytest.approx(3.0) and eta.seconds_left() == pytest.approx(9.0)


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "1 s"), (45, "45 s"), (150, "2 min"), (5400, "1.5 h"),
                                               (60_000 * 3.5, "2.4 days")])
def test_durations_for_people(seconds, text):
    assert jobs.format_seconds(seconds) == text


def test_cancel_token():
    token = jobs.CancelToken()
    token.check()
    jobs.check(None)
    token.cancel("the page was closed")
    with pytest.raises(jobs.JobCancelled, match="^The job was stopped: the page was closed.$"):
        jobs.check(token)


def test_a_new_job_waits_for_a_stopped_one_to_finish_its_step():
    stopped, started = jobs.CancelToken(), threading.Event()
    finished_step = threading.Event()

    def old_job() -> None:
        with jobs.running(stopped):
            started.set()
            time.sleep(0.5)  # the step in flight when Stop was pressed
            finished_step.set()

    thread = threading.Thread(target=old_job)
    thread.start()
    started.wait(5)
    assert jobs.running_jobs() == 1 and jobs.stopping_jobs() == 0
    jobs.wait_for_stopped_jobs(timeout=0.01)  # a running, not stopped, job is no reason to wait
    assert not finished_step.is_set()
    stopped.cancel()
    said: list[str] = []
    jobs.wait_for_stopped_jobs(jobs.CancelToken(), said.append, timeout=10, poll=0.01)
    assert finished_step.is_set() and said == ["waiting for a stopped job to finish its current step"]
    thread.join(5)
    assert jobs.running_jobs() == 0
