"""training/stopsignal.py: a stop request survives where a KeyboardInterrupt would be lost."""

import os
import signal
import threading

import pytest

from training.stopsignal import StopRequest


class _SignalsWhenDropped:
    """Sends SIGINT to this process from its finaliser, as a signal landing in a torch/tqdm __del__ does."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10))  # a few bytecodes: Python runs the handler here, inside __del__


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_asks_second_interrupts_then_handlers_come_back(sig):
    before = signal.getsignal(sig)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), sig)
        sum(range(10))
        assert stop.requested  # asked, and nothing raised
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
            sum(range(10))
    assert signal.getsignal(sig) is before


def test_a_signal_inside_a_finaliser_is_not_lost():
    with StopRequest() as stop:
        _SignalsWhenDropped()  # dropped at once; plain Python would print "Exception ignored" and go on
        sum(range(10))
    assert stop.requested


def test_outside_the_main_thread_it_leaves_the_handlers_alone():
    seen = {}

    def body():
        with StopRequest() as stop:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            seen["requested"] = stop.requested

    before = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == {"handler": before, "requested": False}
