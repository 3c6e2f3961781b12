"""A subscriber that stops reading while masks keep coming survives: libzmq aborted such a process
(`Assertion failed: _input_stopped`, zeromq/libzmq#3937) when the SUB socket used ZMTP heartbeats,
so it runs in a child process here."""

from __future__ import annotations

import subprocess
import sys

from tests.daemon_helpers import REPO

SLOW_READER = """
import threading, time
import numpy as np
from stream.client import MaskSubscriber
from stream.publisher import MaskPublisher

mask = np.zeros((120, 160), np.uint8)
mask[10:40, 10:40] = 255
done = threading.Event()
with MaskPublisher(["tcp://127.0.0.1:*"], sndhwm=1000) as pub, \\
        MaskSubscriber(pub.endpoints, max_age=None, rcvhwm=10) as sub:
    assert pub.wait_for_subscriber(5)

    def flood():
        seq = 0
        while not done.is_set():
            pub.publish_mask("cam0", seq, mask, time.time(), time.time())
            seq += 1
            time.sleep(0.002)

    th = threading.Thread(target=flood)
    th.start()
    got = []
    try:
        for _ in range(2):
            t_end = time.monotonic() + 1
            while time.monotonic() < t_end:
                msg = sub.recv(timeout=0.1)
                if msg is not None:
                    got.append(msg.seq)
            time.sleep(4.5)  # the receive queue stays full past the old 3 s heartbeat timeout
    finally:
        done.set()
        th.join()
    print("received", len(got), "newest", got[-1])
"""


def test_a_subscriber_that_stops_reading_is_not_aborted() -> None:
    r = subprocess.run([sys.executable, "-c", SLOW_READER], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    received, newest = int(r.stdout.split()[1]), int(r.stdout.split()[3])
    assert received > 100 and newest > 1000, r.stdout  # it went on receiving after each pause
