"""The command line, in process: `main(argv)` with output captured."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_line_error, run_cli

from mnist_digits import models, runs
from mnist_digits.cli import main
from mnist_digits.config import TrainConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

QUICK = ["--limit", "200", "--epochs", "1", "--batch-size", "50"]


def test_list_models_prints_a_table(capsys):
    assert main(["list-models"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "FAMILY", "PARAMS", "DESCRIPTION"]
    assert [row.split()[0] for row in rows] == models.list_models()
    for name, row in zip(models.list_models(), rows, strict=True):
        spec = models.get_model_spec(name)
        params = f"{models.count_params(models.build_model(name)):,}"
        assert row.split()[1:3] == [spec.family, params]
        assert row.endswith(spec.description)


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
        (["train", "--augment", "rotation=400"], 2, "augmentation rotation must be a number"),
        (["predict", "--model", "/no/such/folder", "x.png"], 2,
         "model /no/such/folder not found"),
        (["export", "--model", "/no/such.keras", "--format", "onnx", "--out", "x.onnx"], 2,
         "model /no/such.keras not found"),
    ],
)
def test_user_mistakes_give_one_line_and_nonzero_exit(capsys, argv, code, fragment):
    one_line_error(capsys, main(argv), code, fragment)


def test_mistakes_that_need_no_model_are_reported_before_any_framework_loads(tmp_path):
    # In a process of its own: the test session has Keras loaded already.
    missing = str(tmp_path / "gone.png")
    argvs = [["predict", missing], ["train", "--epochs", "0"], ["train", "--model", "nope"],
             ["evaluate", str(tmp_path / "no-run")], ["serve", "--model", "nope.keras"],
             ["export", "--model", "nope.keras", "--format", "onnx", "--out", "x.onnx"],
             ["compare", "--models", "mlp_small,bogus"], ["train", "--resume", missing]]
    code = ("import json, sys\n"
            "from mnist_digits.cli import main\n"
            "codes = [main(argv) for argv in json.loads(sys.argv[1])]\n"
            "print(json.dumps([codes, 'keras' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(argvs)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    codes, keras_loaded = json.loads(done.stdout.splitlines()[-1])
    assert codes == [1, 2, 2, 1, 2, 2, 2, 1] and not keras_loaded, done.stderr
    assert done.stdout.splitlines()[0] == f"{missing}: error: no such file"
    assert len(done.stderr.strip().splitlines()) == len(argvs) - 1, done.stderr


def test_a_plain_folder_as_model_is_not_taken_for_an_interrupted_run(capsys, tmp_path):
    line = one_line_error(capsys, main(["predict", "--model", str(tmp_path), "x.png"]), 2,
                          "is not a run folder")
    assert "--resume" not in line


def test_serve_on_a_busy_port_says_so_before_loading_the_model(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), "--model", "/no/model/needed/yet.keras"])
        one_line_error(capsys, code, 2, "not found")  # the model is checked first, cheaply
        one_line_error(capsys, main(["serve", "--port", str(port)]), 1,
                       f"port {port} on 127.0.0.1 is in use", "--port")


@pytest.mark.parametrize("argv", [
    ["compare", "--models", "mlp_small", "--seeds", "1", "--cluster", "ray"],
    ["sweep", "--model", "mlp_small", "--space", "space.json", "--trials", "1"],
], ids=["compare-on-a-cluster", "sweep"])
def test_without_the_cluster_extra_one_line_says_what_to_install(capsys, monkeypatch, argv):
    # As in a wheel installed without [cluster]: Ray's module cannot be found.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    one_line_error(capsys, main(argv), 2, "need Ray", "pip install 'mnist-digits[cluster]'")


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


def test_training_flags_are_generated_from_the_config_fields(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        flags = field.metadata.get("flags") or ("--" + field.name.replace("_", "-"),)
        assert flags[0] in text, field.name
        # argparse wraps help text; compare its first words.
        assert " ".join(field.metadata["help"].split()[:4]) in " ".join(text.split()), field.name


def test_every_flag_given_lands_in_the_config(tmp_path):
    # Each flag is given a value other than its default, then the command's own preparation
    # resolves the config (no Keras): a flag whose value got lost, or went to another field,
    # leaves a field at its default or with the wrong value.
    from mnist_digits import cli

    values = {"epochs": "2", "batch-size": "64", "optimizer": "sgd", "lr": "0.01",
              "lr-schedule": "cosine", "warmup-epochs": "0.5", "weight-decay": "0.001",
              "label-smoothing": "0.1", "ema": "0.999", "patience": "2", "val-size": "500",
              "seed": "7", "data-dir": str(tmp_path), "limit": "300", "outliers": "0.2",
              "precision": "mixed_bfloat16", "teacher": "packaged", "distill-weight": "2",
              "distill-temperature": "3"}
    argv = ["train", "--model", "mlp_small", "--option", "dropout=0.3", "--augment", "light"]
    for flag, value in values.items():
        argv += [f"--{flag}", value]
    args = cli.build_parser().parse_args(argv)
    args.prepare(args, "tensorflow")
    config = args.launch.config.to_dict()
    defaults = TrainConfig().to_dict()
    unchanged = sorted(k for k in defaults if config[k] == defaults[k])
    # keep_epoch "last" contradicts early stopping (--patience): it is given on its own below.
    assert unchanged == ["keep_epoch"], f"flags that did not reach the config: {unchanged}"
    assert config["learning_rate"] == 0.01 and config["model_options"] == {"dropout": 0.3}
    assert config["ema_momentum"] == 0.999 and config["precision"] == "mixed_bfloat16"
    assert config["augment"] == {"rotation": 8.0, "shift": 2.0, "zoom": 0.08}
    assert config["teacher"] == "packaged" and config["distill_temperature"] == 3.0
    assert config["data_dir"] == str(tmp_path) and config["limit"] == 300
    assert config["model"] == "mlp_small"
    args = cli.build_parser().parse_args(["train", "--keep-epoch", "last"])
    args.prepare(args, "tensorflow")
    assert args.launch.config.keep_epoch == "last"


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from _subcommands(sub)


def test_every_command_has_a_description_examples_and_help_for_each_flag():
    from mnist_digits import cli

    parser = cli.build_parser()
    top = {name for name, _ in _subcommands(parser) if " " not in _.prog.removeprefix(
        "mnist-digits ")}
    commands = dict(_subcommands(parser))
    assert {"train", "predict", "serve", "bench"} <= top
    for name, sub in commands.items():
        assert sub.description, name
        if name in top:
            assert "examples:" in (sub.epilog or ""), name
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{name} {action.option_strings or action.dest}"


def test_a_closed_pipe_ends_quietly():
    # `mnist-digits list-models | head -0`: the reader is gone before the output comes.
    proc = subprocess.Popen([sys.executable, "-m", "mnist_digits", "list-models"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and err == ""


def test_commands_print_no_tensorflow_start_up_noise():
    proc = run_cli("-q", "predict", str(EXAMPLES / "seven.png"))
    assert proc.returncode == 0 and proc.stdout.startswith(str(EXAMPLES / "seven.png"))
    assert proc.stderr == ""


def test_a_real_failure_is_one_line_in_a_real_process(tmp_path):
    proc = run_cli("predict", "--model", str(tmp_path / "gone.keras"), "x.png")
    one_line_error(proc, proc.returncode, 2, "not found")
