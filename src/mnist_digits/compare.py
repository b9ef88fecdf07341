"""Comparing presets: each model with each seed is one training job (`cluster.jobs`), then
the finished runs are tabulated.

The table reports every figure as mean ± std over seeds (sample std; 0 for a single seed) and is
written as Markdown, CSV and a bar chart into its own `results/<stamp>-compare/` folder.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_digits import evaluate, models, plots, runs
from mnist_digits.cluster import jobs
from mnist_digits.cluster.jobs import Job
from mnist_digits.config import resolve_config

log = logging.getLogger(__name__)

_STATS = (("epochs_run", "epochs"), ("train_seconds", "train_seconds"),
          ("val_accuracy", "val_accuracy"), ("test_accuracy", "test_accuracy"))


def make_jobs(
    model_names: Sequence[str],
    seeds: Sequence[int],
    *,
    file_values: Mapping[str, Any] | None = None,
    cli_values: Mapping[str, Any] | None = None,
) -> list[Job]:
    """One training job per model and seed, its run folder tagged `s<seed>`.

    Each model gets its own recipe; `file_values` and `cli_values` (e.g. `{"epochs": 2}`) apply
    on top of it for every model, as they would for `train`. Every config is resolved here, so
    a typo fails at once, not an hour in.

    Raises:
        ConfigError: an unknown model, key or invalid value.
    """
    return [Job(resolve_config(file_values, {**(cli_values or {}), "model": name, "seed": seed}),
                tag=f"s{seed}") for name in model_names for seed in seeds]


def train_presets(names: Sequence[str], seeds: int, results_dir: str | os.PathLike, *,
                  file_values: Mapping[str, Any] | None = None,
                  cli_values: Mapping[str, Any] | None = None, cluster: str | None = None,
                  resources: jobs.Resources = jobs.ONE_CPU, retries: int = jobs.DEFAULT_RETRIES,
                  progress: Any = None) -> tuple[list[Path], list[jobs.Outcome]]:
    """Trains each preset with seeds 0..`seeds`-1 (on `cluster` if given, see `jobs.run_jobs`).

    Returns:
        The finished run folders, and every job's outcome (`jobs.summary` lists the failed).
    """
    planned = make_jobs(names, range(seeds), file_values=file_values, cli_values=cli_values)
    outcomes = jobs.run_jobs(planned, results_dir, cluster=cluster, resources=resources,
                             retries=retries, progress=progress)
    return [o.run_dir for o in outcomes if o.ok], outcomes


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


# Config fields that tell runs of one recipe apart rather than make a different one.
_NOT_RECIPE = ("seed", "data_dir")


def variants(run_metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each run's variant of its model: the config fields (but the seed) in which the model's
    runs differ, as `key=value` pairs; "" where all of that model's runs share one config.

    So `compare --runs` over runs of one preset trained two ways (say `--precision`) tabulates
    the two apart instead of averaging them together.
    """
    recipes = [{k: v for k, v in (m.get("config") or {}).items() if k not in _NOT_RECIPE}
               for m in run_metrics]
    by_model: dict[str, list[dict[str, Any]]] = {}
    for m, recipe in zip(run_metrics, recipes, strict=True):
        by_model.setdefault(m["model"], []).append(recipe)
    differing = {model: sorted({k for recipe in group for k in recipe
                                if any(other.get(k) != recipe[k] for other in group)})
                 for model, group in by_model.items()}
    return [", ".join(f"{k}={recipe.get(k)}" for k in differing[m["model"]])
            for m, recipe in zip(run_metrics, recipes, strict=True)]


def summarize(run_metrics: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Groups runs by model and variant (`variants`) and reduces each figure to mean and std
    over seeds.

    Args:
        run_metrics: dicts as returned by `evaluate.load_metrics`.

    Returns:
        One row per model and variant, in registry order (then others, in first-seen order):
        `model`, `variant`, `family`, `params`, `seeds` (how many runs), and `<figure>_mean` /
        `<figure>_std` for epochs, train_seconds, val_accuracy and test_accuracy.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for m, variant in zip(run_metrics, variants(run_metrics), strict=True):
        groups.setdefault((m["model"], variant), []).append(m)
    # Registry order (small to large per family), whatever order the runs were listed in;
    # anything not in the registry (ensembles) after it.
    order = {name: i for i, name in enumerate(models.list_models())}
    rows = []
    for (model, variant), members in sorted(groups.items(),
                                            key=lambda g: order.get(g[0][0], len(order))):
        row: dict[str, Any] = {"model": model, "variant": variant,
                               "family": members[0]["family"],
                               "params": members[0]["params"], "seeds": len(members)}
        figures = {
            "epochs_run": [m["epochs_run"] for m in members],
            # An ensemble's cost is its members' training.
            "train_seconds": [m.get("members_train_seconds", m["train_seconds"]) for m in members],
            "val_accuracy": [m["val"]["accuracy"] for m in members],
            "test_accuracy": [m["test"]["accuracy"] for m in members],
        }
        for key, name in _STATS:
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(figures[key])
        rows.append(row)
    return rows


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary rows as CSV text, numbers unrounded."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def label(row: Mapping[str, Any]) -> str:
    """A summary row's name in tables and charts: the model, and its variant if any."""
    return f"{row['model']} ({row['variant']})" if row.get("variant") else str(row["model"])


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary rows as a Markdown table, accuracies in percent, mean ± std."""
    lines = ["| model | family | params | epochs | train s | val acc. (%) | test acc. (%) | "
             "seeds |", "|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(
            f"| {label(r)} | {r['family']} | {r['params']:,} | {r['epochs_mean']:.1f} | "
            f"{r['train_seconds_mean']:.0f} ± {r['train_seconds_std']:.0f} | "
            f"{100 * r['val_accuracy_mean']:.2f} ± {100 * r['val_accuracy_std']:.2f} | "
            f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f} | "
            f"{r['seeds']} |")
    return "\n".join(lines) + "\n"


def write_comparison(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> \
        list[dict[str, Any]]:
    """Writes `comparison.md`, `comparison.csv` and `comparison.png` for finished runs.

    Raises:
        RunError: a run folder has no `metrics.json`.
    """
    out_dir = Path(out_dir)
    metrics = [evaluate.load_metrics(d) for d in run_dirs]
    rows = summarize(metrics)
    runs_list = "\n".join(f"- `{m['run_dir']}`" for m in metrics)
    runs.atomic_write_text(out_dir / runs.COMPARISON_MD,
                           to_markdown(rows) + "\nRuns:\n" + runs_list + "\n")
    runs.atomic_write_text(out_dir / runs.COMPARISON_CSV, to_csv(rows))
    seeds = sorted({r["seeds"] for r in rows})
    runs.save_figure(plots.comparison_bars(
        [{**r, "label": label(r)} for r in rows],
        title=f"Test accuracy, mean ± std over {'/'.join(map(str, seeds))} seed(s)"),
        out_dir / runs.COMPARISON_PLOT)
    return rows
