"""Run folders: naming, `latest`, atomic writes."""

from __future__ import annotations

import datetime

import pytest

from mnist_digits import runs
from mnist_digits.errors import RunError

NOON = datetime.datetime(2026, 1, 2, 12, 0, 0)


def test_run_dir_name_and_no_overwrite(tmp_path):
    first = runs.new_run_dir(tmp_path, "cnn_bn", "try", now=NOON)
    second = runs.new_run_dir(tmp_path, "cnn_bn", "try", now=NOON)
    assert first.name == "20260102-120000-cnn_bn-try"
    assert second.name == "20260102-120000-cnn_bn-try-2"
    assert first.is_dir() and second.is_dir()


def test_unsafe_tag_is_refused(tmp_path):
    with pytest.raises(RunError, match="tag"):
        runs.new_run_dir(tmp_path, "cnn_bn", "../escape")


def test_latest_points_at_newest(tmp_path):
    a = runs.new_run_dir(tmp_path, "a", now=NOON)
    b = runs.new_run_dir(tmp_path, "b", now=NOON)
    runs.point_latest(tmp_path, a)
    runs.point_latest(tmp_path, b)
    assert (tmp_path / "latest").resolve() == b.resolve()
    (b / runs.MODEL).write_text("x")
    assert runs.resolve_run_dir(tmp_path / "latest") == b.resolve()


def test_resolve_run_dir_errors(tmp_path):
    with pytest.raises(RunError, match="not found"):
        runs.resolve_run_dir(tmp_path / "nope")
    with pytest.raises(RunError, match=r"is not a run folder \(it has no config\.json\)"):
        runs.resolve_run_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")  # a run that started: it may be resumed
    with pytest.raises(RunError, match=r"has no model\.keras; .*train --resume"):
        runs.resolve_run_dir(tmp_path)


def test_failed_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "metrics.json"
    runs.write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), runs.atomic_path(path) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("crash mid-save")
    assert runs.read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left
