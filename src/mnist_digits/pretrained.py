"""The packaged reading model: copying a finished run into the package, with its model card.

`predict` and `serve` use the packaged model when no `--model` is given, so they work right after
installation. It is an ordinary run's `model.keras` with its manifest, loaded through the same
safety checks as any model file (`modelfile.load_model`). The model card says where it came
from and what it measured: preset, seed, data hash, test accuracy, calibration, the operating
point and the bench figures at it, versions and date.

`mnist-digits package-model RUN_DIR --bench FILE` writes all of it into
`src/mnist_digits/pretrained/`; that folder is committed.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path
from typing import Any

from mnist_digits import modelfile, runs
from mnist_digits.errors import ConfigError, RunError

MAX_BYTES = 10 * 1024 * 1024  # the package must stay small
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
MODEL_FILE = "reader.keras"


def package_dir() -> Path:
    """The folder inside the installed package that holds the packaged model."""
    return Path(__file__).resolve().parent / "pretrained"


def model_path() -> Path:
    """Where the packaged, calibrated reading model is: the one place that knows it."""
    return package_dir() / MODEL_FILE


def model_file() -> Path:
    """`model_path`, checked.

    Raises:
        RunError: this installation has no packaged model.
    """
    path = model_path()
    if not path.is_file():
        raise RunError(f"this installation has no packaged model ({path}); reinstall "
                       f"mnist-digits, or give a run folder")
    return path


def model_card(run_dir: Path, threshold: float, bench: dict[str, Any] | None) -> dict[str, Any]:
    """The model card's facts, from the run's config and metrics and an optional bench result."""
    saved = runs.read_config(run_dir)
    metrics = runs.read_json(run_dir / runs.METRICS)
    config = saved.config.to_dict() if saved.config else {}
    card: dict[str, Any] = {
        "model": metrics["model"],
        "preset": config.get("model"),
        "seed": config.get("seed"),
        "recipe": {k: config[k] for k in ("epochs", "batch_size", "learning_rate", "lr_schedule",
                                          "label_smoothing", "augment", "outliers")
                   if k in config},
        "data": saved.environment.get("data"),
        "params": metrics["params"],
        "test_accuracy": metrics["test"]["accuracy"],
        "val_accuracy": metrics["val"]["accuracy"],
        "calibration": metrics["calibration"],
        "threshold": threshold,
        "train_seconds": metrics["train_seconds"],
        "versions": {k: v for k, v in saved.environment.items()
                     if k in ("mnist_digits", "keras", "backend", "tensorflow", "numpy",
                              "python")},
        "trained": run_dir.name[:15],
        "packaged": datetime.date.today().isoformat(),
    }
    if bench:
        sections = bench.get("sections", {})
        figures: dict[str, Any] = {"file": bench.get("_path")}
        if "realworld" in sections:
            r = sections["realworld"]
            figures["user_style_accuracy"] = r["user_style"]["accuracy"]
            figures["tight_crop_accuracy"] = r["tight_crops"]["accuracy"]
        if "numbers" in sections:
            figures["numbers_exact"] = sections["numbers"]["exact"]
        if "rejection" in sections:
            r = sections["rejection"]
            figures.update(nondigits_rejected=r["nondigits_rejected"],
                           mnist_test_rejected=r["mnist_test_rejected"],
                           user_style_rejected=r["user_style_rejected"])
        card["bench"] = figures
    return card


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as Markdown."""
    calibration = card["calibration"]
    lines = [
        f"# Model card: `{card['model']}` (packaged reading model)", "",
        "Reads one handwritten digit per 28×28 MNIST-style frame; `mnist-digits predict` and "
        "`serve` cut images into such frames (one per digit) and use this model when no "
        "`--model` is given.", "",
        "| fact | value |", "|---|---|",
        f"| preset | `{card['preset']}`, seed {card['seed']} |",
        f"| recipe | {', '.join(f'{k} {v}' for k, v in card['recipe'].items())} |",
        f"| training data | MNIST, 50,000 training images (`{card['data']}`); the last 10,000 "
        f"for validation and calibration |",
        f"| parameters | {card['params']:,} |",
        f"| MNIST test accuracy | {100 * card['test_accuracy']:.2f}% |",
        f"| temperature | {calibration['temperature']:.4f} (fitted on validation) |",
        f"| test ECE (15 bins) | {100 * calibration['test_ece']:.2f}% calibrated, "
        f"{100 * calibration['test_ece_uncalibrated']:.2f}% before |",
        f"| operating point | threshold {card['threshold']:g} on the calibrated confidence |",
        f"| trained | {card['trained']}, {card['train_seconds']:.0f} s on 2 CPU cores |",
        f"| versions | {', '.join(f'{k} {v}' for k, v in card['versions'].items())} |",
        f"| packaged | {card['packaged']} |",
    ]
    bench = card.get("bench")
    if bench:
        lines += ["", f"At the operating point (`mnist-digits bench`, {bench.get('file')}):", "",
                  "| measure | value |", "|---|--:|"]
        names = {"user_style_accuracy": "user-style photos and canvases, read right",
                 "tight_crop_accuracy": "tightly cropped digits, read right",
                 "numbers_exact": "numbers of 2-6 digits, read exactly",
                 "nondigits_rejected": "non-digit drawings rejected",
                 "mnist_test_rejected": "MNIST test digits rejected",
                 "user_style_rejected": "user-style digits rejected"}
        lines += [f"| {label} | {100 * bench[key]:.2f}% |" for key, label in names.items()
                  if key in bench]
    lines += ["", "## Limits", "",
              "- Trained on MNIST only: digits written like American census and school "
              "handwriting of the 1990s. Other styles (a crossed 7, a 1 with a long flag) are "
              "read less surely.",
              "- \"Not a digit\" was learnt from synthetic drawings (outlier exposure); unusual "
              "non-digits can still get a confident digit.",
              "- One line of digits, left to right; touching digits are split only when the "
              "parts read surely.", ""]
    return "\n".join(lines)


def package_model(run_dir: str | os.PathLike, *, threshold: float,
                  bench: dict[str, Any] | None = None,
                  dest: str | os.PathLike | None = None) -> Path:
    """Copies a finished run's calibrated model into the package, with a model card.

    Args:
        run_dir: the finished run.
        threshold: the operating point the card states.
        bench: a bench result (its JSON) measured with this model, for the card's figures.
        dest: the target folder; `package_dir()` if None.

    Returns:
        The packaged model file.

    Raises:
        ConfigError: the run is unfinished, uncalibrated, or its model is over `MAX_BYTES`.
        RunError: the run folder or its model cannot be read, or the model is unsafe.
    """
    run_dir = runs.resolve_run_dir(run_dir, need=runs.METRICS)
    source = run_dir / runs.MODEL
    if source.stat().st_size > MAX_BYTES:
        raise ConfigError(f"{source} is {source.stat().st_size / 2**20:.1f} MB; the packaged "
                          f"model must stay under {MAX_BYTES / 2**20:.0f} MB")
    card = model_card(run_dir, threshold, bench)
    if card["calibration"].get("temperature") is None:
        raise ConfigError(f"{run_dir} has no calibration; retrain it with this version of "
                          f"mnist-digits")
    modelfile.load_model(source)  # the same checks as any model: refuses unsafe files
    dest = Path(dest) if dest is not None else package_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / MODEL_FILE
    with runs.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    manifest = runs.read_json(modelfile.manifest_path(source))
    runs.write_json(modelfile.manifest_path(target), {**manifest, "file": MODEL_FILE})
    runs.write_json(dest / CARD_JSON, card)
    runs.atomic_write_text(dest / CARD_MD, card_markdown(card))
    return target
