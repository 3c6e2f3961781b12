"""Recording: policy, atomic files + manifest that training reads, quota, failures that never stop masks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from stream.client import MaskSubscriber
from stream.errors import UserError
from stream.recorder import MANIFEST, CameraRecorder, RecordPolicy, read_manifest
from stream.synthetic import SceneConfig, SyntheticScene
from tests.daemon_helpers import REPO, start_daemon, stop
from training.data import load_footage

SCENE = SyntheticScene(SceneConfig(width=160, height=120))


def frame(t: int) -> np.ndarray:
    return SCENE.frame(t)[0]


def test_periodic_and_burst_policy(tmp_path):
    rec = CameraRecorder(tmp_path, "cam0", RecordPolicy(every=10, burst_on_change=0.05, burst_frames=3, burst_interval=0.5))
    kept = [t for t in np.arange(0, 30, 0.1) if rec.offer(frame(0), float(t), fg_ratio=0.01)]
    assert [round(k, 1) for k in kept] == [0.0, 10.0, 20.0]
    kept = [t for t in np.arange(30, 33, 0.1) if rec.offer(frame(0), float(t), fg_ratio=0.2 if t > 31 else 0.01)]
    rec.close()
    # periodic at 30, then a burst of 3 frames 0.5 s apart once the ratio jumps
    assert round(kept[0], 1) == 30.0 and len(kept) == 4
    assert np.allclose(np.diff(kept[1:]), 0.5, atol=0.11)


def test_files_and_manifest_feed_training(tmp_path):
    rec = CameraRecorder(tmp_path, "door", RecordPolicy(every=1))
    for i in range(6):
        assert rec.offer(frame(i * 7), 1000.0 + i, fg_ratio=0.03)
        time.sleep(0.05)
    rec.close()
    entries = [json.loads(x) for x in (tmp_path / "door" / MANIFEST).read_text().splitlines()]
    assert [e["t"] for e in entries] == [1000.0 + i for i in range(6)]
    assert all(e["camera"] == "door" and (e["width"], e["height"]) == (160, 120) for e in entries)
    assert not list((tmp_path / "door").glob(".*.tmp"))
    footage = load_footage([tmp_path / "door"], progress=False)
    assert footage.frames.shape == (6, 120, 160, 3)
    assert np.allclose(footage.timestamps, [1000.0 + i for i in range(6)])
    # a second recorder continues the numbering
    rec2 = CameraRecorder(tmp_path, "door", RecordPolicy(every=1))
    rec2.offer(frame(99), 2000.0)
    rec2.close()
    assert len(load_footage([tmp_path / "door"], progress=False).frames) == 7


def test_one_manifest_parser_strict_for_training_lenient_for_retrain(tmp_path):
    from training.retrain import recorded_frames

    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    lines = ['{"file": "b.png", "t": 2}', '{"file": "../etc/passwd", "t": 1}', '{"file": "a.png", "t": true}',
             "not json", "", '{"file": "a.png", "t": 1.5, "camera": "c"}', '{"file": "gone.png", "t": 3}']
    (tmp_path / MANIFEST).write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"manifest.jsonl line 2 "):
        read_manifest(tmp_path / MANIFEST)
    loose = read_manifest(tmp_path / MANIFEST, strict=False)
    assert [(e["file"], e["t"]) for e in loose] == [("b.png", 2.0), ("a.png", 1.5), ("gone.png", 3.0)]
    assert loose[1]["camera"] == "c"
    # retraining: bad lines and missing files skipped, in the order recorded (not by t: NTP steps clocks back)
    assert [e["file"] for e in recorded_frames(tmp_path)] == ["b.png", "a.png"]


def test_half_written_last_line_is_skipped_even_when_strict(tmp_path):
    (tmp_path / MANIFEST).write_text('{"file": "a.png", "t": 1}\n{"file": "b.png", "t": 2}\n{"file": "c.p')
    assert [e["file"] for e in read_manifest(tmp_path / MANIFEST)] == ["a.png", "b.png"]
    (tmp_path / MANIFEST).write_text('{"file": "a.png", "t": 1}\n{"file": "b.png", "t": 2}')  # whole, no newline: kept
    assert [e["file"] for e in read_manifest(tmp_path / MANIFEST)] == ["a.png", "b.png"]
    (tmp_path / MANIFEST).write_text('{"file": "a.png", "t": 1}\n{"file": "c.p\n{"file": "b.png", "t": 2}\n')
    with pytest.raises(UserError, match="line 2 "):  # one in the middle is still an error
        read_manifest(tmp_path / MANIFEST)


def test_a_clock_stepped_back_does_not_pause_recording(tmp_path):
    """Scheduled on t only, a 1 h step back (NTP) kept nothing for an hour."""
    rec = CameraRecorder(tmp_path, "cam0", RecordPolicy(every=10, burst_on_change=0))
    kept = [t for t in (1000.0, 1005.0, 1010.0, -2600.0, -2595.0, -2590.0) if rec.offer(frame(0), t)]
    rec.close()
    assert kept == [1000.0, 1010.0, -2600.0, -2590.0]


def _recorder_after_crash(tmp_path, quota_frames: float) -> tuple[CameraRecorder, Path]:
    one = len(__import__("cv2").imencode(".jpg", frame(0), [1, 92])[1])
    policy = RecordPolicy(every=1, quota_bytes=int(one * quota_frames))
    rec = CameraRecorder(tmp_path, "cam0", policy)
    for i in range(3):
        rec.offer(frame(i), 1000.0 + i)
    rec.close()
    man = tmp_path / "cam0" / MANIFEST
    man.write_text(man.read_text() + '{"file": "000000003.jpg", "t": 10')  # killed in the middle of an append
    (tmp_path / "cam0" / ".000000004.jpg.tmp").write_bytes(b"\xff\xd8 half a frame")  # ... or of a frame
    return CameraRecorder(tmp_path, "cam0", policy), man


def test_a_line_cut_by_a_crash_is_removed_and_compaction_goes_on(tmp_path, caplog):
    rec, man = _recorder_after_crash(tmp_path, quota_frames=4.5)
    for i in range(8):
        rec.offer(frame(10 + i), 2000.0 + i)
        time.sleep(0.03)
    rec.close()
    assert "half-written" in caplog.text and "could not compact" not in caplog.text
    files = sorted(p.name for p in (tmp_path / "cam0").glob("*.jpg"))
    listed = [e["file"] for e in read_manifest(man)]  # strict, as `sparsecam train` reads it
    assert listed == files and len(files) == 4 and rec.deleted == 7
    assert not list((tmp_path / "cam0").glob(".*"))  # the crash's half-written frame is gone too


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path):
    rec = CameraRecorder(tmp_path, "cam0", RecordPolicy(every=1))
    rec.offer(frame(0), 1000.0)
    rec.close()
    man = tmp_path / "cam0" / MANIFEST
    man.write_text(man.read_text().rstrip("\n"))  # edited by hand, say: whole, but no newline at the end
    rec = CameraRecorder(tmp_path, "cam0", RecordPolicy(every=1))
    rec.offer(frame(1), 1001.0)
    rec.close()
    assert [e["t"] for e in read_manifest(man)] == [1000.0, 1001.0]


def test_a_manifest_line_that_cannot_be_written_whole_is_cut_back(tmp_path, monkeypatch):
    """Disk full in the middle of an append left half a line, glued to the next entry."""
    import os

    import stream.recorder as recorder

    def settled(done: int) -> None:  # the writer thread has handled ``done`` frames
        t_end = time.monotonic() + 30
        while rec.written + rec.errors < done and time.monotonic() < t_end:
            time.sleep(0.01)

    rec = CameraRecorder(tmp_path, "cam0", RecordPolicy(every=1))
    rec.offer(frame(0), 1000.0)
    settled(1)
    real_write = os.write
    monkeypatch.setattr(recorder.os, "write", lambda fd, data: real_write(fd, data[: len(data) // 2]))  # a short write
    rec.offer(frame(1), 1001.0)
    settled(2)
    monkeypatch.setattr(recorder.os, "write", real_write)
    rec.offer(frame(2), 1002.0)
    rec.close()
    assert rec.errors == 1 and rec.written == 2
    entries = read_manifest(tmp_path / "cam0" / MANIFEST)  # strict: every line whole
    assert [e["t"] for e in entries] == [1000.0, 1002.0]
    assert sorted(p.name for p in (tmp_path / "cam0").glob("*.jpg")) == [e["file"] for e in entries]  # the unlisted frame is gone


def test_quota_deletes_oldest_first(tmp_path):
    one = len(__import__("cv2").imencode(".jpg", frame(0), [1, 92])[1])
    quota = int(one * 4.5)
    rec = CameraRecorder(tmp_path, "cam0", RecordPolicy(every=1, quota_bytes=quota))
    for i in range(12):
        rec.offer(frame(i * 13), float(i))
        time.sleep(0.03)
    rec.close()
    files = sorted((tmp_path / "cam0").glob("*.jpg"))
    assert sum(f.stat().st_size for f in files) <= quota
    assert rec.deleted == 12 - len(files) > 0
    names = [json.loads(x)["file"] for x in (tmp_path / "cam0" / MANIFEST).read_text().splitlines()]
    assert names == [f.name for f in files]  # the newest kept, manifest compacted
    assert files[-1].name == f"{11:09d}.jpg"


def test_unwritable_directory_is_reported_not_raised(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rec = CameraRecorder(blocker / "sub", "cam0", RecordPolicy(every=1))
    for i in range(3):
        rec.offer(frame(i), float(i))
    rec.close()
    assert rec.written == 0 and rec.errors >= 1
    assert sum("cannot record" in r.message for r in caplog.records) == 1  # logged once, not per frame


def test_daemon_records_and_keeps_publishing_when_recording_fails(tmp_path):
    good = {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30}],
            "recording": {"enabled": True, "dir": str(tmp_path / "rec"), "every": 0.2}}
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    bad = {**good, "recording": {**good["recording"], "dir": str(blocker / "rec")}}
    for cfg, expect_files in ((good, True), (bad, False)):
        proc, ep = start_daemon(tmp_path, cfg)
        try:
            with MaskSubscriber([ep], max_age=None) as sub:
                got, t_end = 0, time.monotonic() + 20
                while got < 45 and time.monotonic() < t_end:
                    got += sub.recv(timeout=0.5) is not None
        finally:
            code, err = stop(proc)
        assert got == 45 and code == 0, err[-2000:]
        recorded = sorted((tmp_path / "rec").rglob("*"))
        if expect_files:
            assert len([f for f in recorded if f.suffix == ".jpg"]) >= 3
            good_run = recorded
        else:  # the failure was said, nothing was written (the blocker is untouched), and the masks above kept coming
            assert "cannot record" in err
            assert blocker.is_file() and blocker.read_text() == "x" and recorded == good_run


def test_record_cli(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"cameras": [{"id": "cam0", "source": "synthetic:size=160x120", "fps": 20}]}))
    res = subprocess.run([sys.executable, "-m", "stream.cli", "record", "--config", str(cfg), "--dir", str(tmp_path / "r"),
                          "--every", "0.25", "--duration", "2"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(list((tmp_path / "r" / "cam0").glob("*.jpg"))) >= 5
    assert "frames written" in res.stdout


def test_record_cli_exits_1_when_frames_could_not_be_written(tmp_path):
    """Writing is this command's only job: 'N errors' with exit 0 hid a recording that never happened."""
    root = tmp_path / "r"
    root.mkdir()
    (root / "cam0").write_text("a file where the camera's folder goes")
    res = subprocess.run([sys.executable, "-m", "stream.cli", "record", "--dir", str(root), "--every", "0.2", "--duration", "1.5"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "could not be written" in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


@pytest.mark.parametrize("command", ["serve --duration 0", "serve --duration nan", "serve --duration -1", "record --duration 0",
                                     "record --every 0", "record --every nan", "subscribe --timeout nan", "subscribe --max-age -1"])
def test_durations_and_periods_out_of_range_are_usage_errors(command):
    """--duration 0 and nan ran forever, -1 stopped at once with exit 0, record --every 0 became 10 s."""
    res = subprocess.run([sys.executable, "-m", "stream.cli", *command.split()], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "must be a number of seconds" in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
