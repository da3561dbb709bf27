"""The remote runner's timeout is reported as a timeout, however the threads interleave.

Defect (CI, test_a_hung_host_holds_status_for_one_host_timeout_not_three): invoke's timer
thread closes the channel, and invoke reads ``timed_out`` as "the timer thread has ended".
The main thread, woken by the close, could look before the timer thread returned: the
timed-out command came back as a result with exit status -1 (``error: h3: exit status -1``).
Here the timer thread is held inside its close, the widest form of that window."""

from __future__ import annotations

import threading

import fabric

from fleetlib.remote import _TimedRemote


class HeldChannel:
    """A channel whose close waits until the test lets it go."""

    def __init__(self) -> None:
        self.closing = threading.Event()
        self.release = threading.Event()

    def close(self) -> None:
        self.closing.set()
        self.release.wait(10)


def test_a_timeout_reads_as_one_while_the_timer_thread_is_still_closing() -> None:
    runner = _TimedRemote(context=fabric.Connection("fleet-test.invalid"))
    channel = HeldChannel()
    runner.channel = channel
    assert not runner.timed_out
    runner.start_timer(0.01)
    try:
        assert channel.closing.wait(10), "the timer never fired"
        assert runner.timed_out
    finally:
        channel.release.set()
        runner._timer.join(10)
    assert runner.timed_out


def test_a_close_that_fails_stays_in_the_timer_thread() -> None:
    class BrokenChannel:
        def close(self) -> None:
            raise EOFError("the link is gone")

    seen: list[threading.ExceptHookArgs] = []
    previous, threading.excepthook = threading.excepthook, seen.append
    try:
        runner = _TimedRemote(context=fabric.Connection("fleet-test.invalid"))
        runner.channel = BrokenChannel()
        runner.start_timer(0.01)
        runner._timer.join(10)
    finally:
        threading.excepthook = previous
    assert seen == []
    assert runner.timed_out
