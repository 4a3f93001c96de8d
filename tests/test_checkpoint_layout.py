"""One owner of the checkpoint layout: the trainer, the converters, DPO, the pipeline and `slurm status` agree on
which checkpoint is the latest."""

from __future__ import annotations

from findap_nemo.checkpoint_layout import (TRACKER, checkpoint_root, iter_dir, iteration_of, latest_checkpoint,
                                           list_checkpoints, tracked_iteration, write_tracker)
from findap_nemo.slurm.status import latest_checkpoint as status_latest


def _ckpt(root, it):
    d = iter_dir(root, it)
    d.mkdir(parents=True)
    (d / "metadata.json").write_text("{}")
    return d


def test_latest_follows_the_tracker_then_the_highest_complete_folder(tmp_path):
    assert latest_checkpoint(tmp_path) is None and status_latest(str(tmp_path)) == ""
    _ckpt(tmp_path, 100)
    _ckpt(tmp_path, 200)
    (tmp_path / "iter_0000300.tmp-123").mkdir()  # a save in progress is never a checkpoint
    assert list_checkpoints(tmp_path) == [100, 200]
    assert latest_checkpoint(tmp_path) == iter_dir(tmp_path, 200)  # no tracker: the highest complete folder
    write_tracker(tmp_path, 100)
    assert (tmp_path / TRACKER).read_text() == "100" and tracked_iteration(tmp_path) == 100
    assert latest_checkpoint(tmp_path) == iter_dir(tmp_path, 100)  # the tracker wins (it moves last)
    assert status_latest(str(tmp_path)) == f"iter 100 in {tmp_path}"
    (tmp_path / TRACKER).write_text("400")  # a tracker naming a folder that is gone: the highest complete one
    assert latest_checkpoint(tmp_path) == iter_dir(tmp_path, 200)
    assert status_latest(str(tmp_path)) == f"iter 200 in {tmp_path}"
    (tmp_path / TRACKER).write_text("garbage")
    assert tracked_iteration(tmp_path) is None and latest_checkpoint(tmp_path) == iter_dir(tmp_path, 200)


def test_one_iteration_folder_names_itself_and_its_root(tmp_path):
    one = _ckpt(tmp_path, 7)
    assert latest_checkpoint(one) == one and iteration_of(one) == 7
    assert checkpoint_root(one) == tmp_path and checkpoint_root(tmp_path) == tmp_path


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    """findap_nemo.files: a failed write leaves the previous file and no temporary beside it."""
    import pytest

    from findap_nemo import files

    target = tmp_path / "sub" / "out.json"
    files.write_json_atomic(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken)
    with pytest.raises(OSError):
        files.write_jsonl_atomic(target, [{"a": 2}])
    assert target.read_text() == '{\n  "a": 1\n}\n' and sorted(p.name for p in target.parent.iterdir()) == ["out.json"]
