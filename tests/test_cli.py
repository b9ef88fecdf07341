"""The command line, in process: `main(argv)` with output captured."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mnist_digits import models, runs
from mnist_digits.cli import main

QUICK = ["--limit", "200", "--epochs", "1", "--batch-size", "50"]


def one_line_error(capsys, code: int, expected_code: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert code == expected_code
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in captured.err + captured.out
    for fragment in fragments:
        assert fragment in err
    return err


def test_list_models_text(capsys):
    assert main(["list-models"]) == 0
    assert capsys.readouterr().out.split() == models.list_models()


def test_list_models_json(capsys):
    assert main(["list-models", "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == models.list_models()
    for entry in entries:
        assert entry["family"] in ("mlp", "cnn")
        assert isinstance(entry["params"], int) and entry["params"] > 0
        assert entry["description"] and "\n" not in entry["description"]


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["train", "--model", "resnet9000"], 2, "unknown model 'resnet9000'"),
        (["train", "--epochs", "ten"], 2, "argument --epochs: expected a whole number"),
        (["train", "--epochs", "0"], 2, "must be at least 1"),
        (["train", "--lr", "-1"], 2, "must be positive"),
        (["train", "--optimizer", "adagrad"], 2, "unknown optimizer"),
        (["train", "--option", "dropout"], 2, "expected KEY=VALUE"),
        (["train", "--option", "wings=2"], 2, "has no option(s) wings"),
        (["train", "--frobnicate"], 2, "unrecognized arguments"),
        (["fly"], 2, "invalid choice"),
        (["evaluate", "/nonexistent/run"], 1, "run folder /nonexistent/run not found"),
        (["compare", "--models", "mlp_small,bogus"], 2, "unknown model 'bogus'"),
    ],
)
def test_user_mistakes_give_one_line_and_nonzero_exit(capsys, argv, code, fragment):
    one_line_error(capsys, main(argv), code, fragment)


def test_missing_config_file(capsys, tmp_path):
    one_line_error(capsys, main(["train", "--config", str(tmp_path / "x.json")]), 2, "not found")


def test_bad_data_dir_names_the_file(capsys, tmp_path):
    code = main(["train", "--data-dir", str(tmp_path), "--results-dir", str(tmp_path / "r"),
                 *QUICK])
    one_line_error(capsys, code, 1, "train-images-idx3-ubyte.gz: MNIST file not found")


def test_train_then_evaluate(capsys, tmp_path):
    results = tmp_path / "results"
    code = main(["train", "--model", "mlp_small", "--seed", "3", "--tag", "smoke",
                 "--results-dir", str(results), *QUICK])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    run_dir = Path(out[-1])  # the run folder's path is the last line
    assert run_dir.parent == results and run_dir.name.endswith("-mlp_small-smoke")
    assert "test accuracy" in out[-2]
    assert (results / runs.LATEST).resolve() == run_dir.resolve()
    config = json.loads((run_dir / runs.CONFIG).read_text())["config"]
    assert config["seed"] == 3 and config["limit"] == 200 and config["batch_size"] == 50

    (run_dir / runs.METRICS).unlink()
    assert main(["evaluate", str(results / runs.LATEST)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run_dir.resolve())
    assert json.loads((run_dir / runs.METRICS).read_text())["seed"] == 3


def test_resume_refuses_extra_flags(capsys, tmp_path):
    code = main(["train", "--resume", str(tmp_path), "--epochs", "3"])
    one_line_error(capsys, code, 2, "drop --epochs")


def test_compare_trains_and_tabulates(capsys, tmp_path):
    results = tmp_path / "results"
    code = main(["compare", "--models", "mlp_small,cnn_keras_io", "--seeds", "2",
                 "--results-dir", str(results), *QUICK])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    out_dir = Path(out[-1])
    table = (out_dir / runs.COMPARISON_MD).read_text()
    assert "| mlp_small | mlp |" in table and "| cnn_keras_io | cnn |" in table
    with (out_dir / runs.COMPARISON_CSV).open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["mlp_small", "cnn_keras_io"]
    assert all(r["seeds"] == "2" for r in rows)
    assert (out_dir / runs.COMPARISON_PLOT).stat().st_size > 0
    run_dirs = sorted(p for p in results.iterdir() if p.name.endswith(("-s0", "-s1")))
    assert len(run_dirs) == 4

    # --runs rebuilds the same table from the existing runs, without training.
    assert main(["compare", "--runs", *map(str, run_dirs), "--results-dir", str(results)]) == 0
    again = Path(capsys.readouterr().out.strip().splitlines()[-1])
    with (again / runs.COMPARISON_CSV).open() as f:
        assert sorted(r["test_accuracy_mean"] for r in csv.DictReader(f)) == \
            sorted(r["test_accuracy_mean"] for r in rows)
