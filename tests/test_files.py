"""stream/files.py: atomic writes, and a write that fails is one line naming the file."""

from __future__ import annotations

import os

import pytest

from stream.errors import UserError
from stream.files import write_atomic


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "summary.json"
    write_atomic(target, '{"a": 1}')
    write_atomic(target, b'{"a": 2}')
    assert target.read_text() == '{"a": 2}' and sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]


def test_a_full_disk_is_one_line_and_the_old_file_stays_whole(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "run.json"
    target.write_text("old")

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UserError, match=f"cannot write {target}: No space left on device"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and sorted(q.name for q in tmp_path.iterdir()) == ["run.json"]  # no temp file left


def test_a_file_in_the_way_of_the_folder_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="cannot write"):
        write_atomic(tmp_path / "notes.txt" / "x.json", "{}")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_checkpoint_on_a_full_disk_is_one_line_and_the_old_one_stays(tmp_path, monkeypatch):
    """torch.save straight to a file on a full disk raised its zip writer's RuntimeError ("unexpected pos"):
    `sparsecam train` ended in a traceback. The write is now ours and names the cause."""
    import errno

    import stream.files
    import torch

    from training.checkpoint import save_checkpoint

    target = tmp_path / "checkpoint.pt"
    save_checkpoint(target, {"step": 1})
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.fh = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(stream.files.os, "fdopen", Full)
    with pytest.raises(UserError, match=f"cannot write {target}: No space left on device"):
        save_checkpoint(target, {"step": 2})
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_checkpoint_is_synced_to_disk_before_and_after_its_rename(tmp_path, monkeypatch):
    """After a power cut a renamed-but-unsynced checkpoint.pt can be empty (ext4 commits the rename first),
    and the run cannot be resumed. A checkpoint syncs its data, then its folder; plain writes do not pay that."""
    from training.checkpoint import save_checkpoint

    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_atomic(tmp_path / "plain.json", "{}")
    assert synced == []
    save_checkpoint(tmp_path / "checkpoint.pt", {"step": 3})
    assert len(synced) == 2 and os.path.basename(synced[0]).startswith(".checkpoint.pt.") and synced[1] == str(tmp_path)
    assert (tmp_path / "checkpoint.pt").stat().st_size > 0
