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
