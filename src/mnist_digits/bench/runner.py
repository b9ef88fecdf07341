"""`mnist-digits bench`: measured figures, written to `bench/results/<date>-<host>.json` and `.md`.

Sections (run all, in the order of `defaults.BENCH_SECTIONS`, or some with `--only NAME,...`):
- `training`: the reference recipes (keras-io's convnet, the classic FFNN; see `BASELINES`)
  against our fast presets, 3 seeds each, on the same split and machine: training time, test
  accuracy (mean ± std), the time ratio, peak memory; and the augmentation pipeline's throughput
  next to the training throughput, to show it is not the bottleneck.
- `ablation`: each recipe choice of the fast presets undone in turn, and a cheaper `cnn_fast`
  (one seed): does it pay?
- `best`: the best-accuracy presets over 5 seeds each, each preset's ensemble, and all of them
  averaged, with and without test-time views.
- `feedforward`: the best feedforward preset (`mlp_distill`) over 3 seeds.
- `calibration`: every preset's calibration error before and after temperature scaling.
- `realworld`: the `predict` path on synthetic user-style images of MNIST test digits (see
  `userimages`), against the naive "shrink the whole image" approach most demos use.
- `numbers`: handwritten numbers of 2-6 digits on plain, ruled and squared paper.
- `rejection`: drawings that are not digits, rejected, against digits wrongly rejected.
- `inference`: the default model's throughput through `predict_proba`, batched and one image
  at a time, the code path of `predict` and the web server.
- `load`: the web server under concurrent load (see `loadtest`): status codes, wrong answers,
  latency percentiles, throughput and the server's memory before and after.
- `backends`: `cnn_fast` training and inference on each Keras backend (see `backends`).
- `cluster`: a compare on a two-node loopback Ray cluster against the same jobs run here.

The sections live in `training`, `images`, `serving`, `backends` and `cluster`; each
measures, then renders its own Markdown (and figures). Training runs go to `results/bench/<stamp>/`.

`--quick` runs a tiny version in seconds, for the CI smoke test; its numbers mean nothing.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_digits import runs
from mnist_digits.bench import backends, cluster, images, serving, training
from mnist_digits.bench.context import Context, Section, machine
from mnist_digits.defaults import BENCH_SECTIONS
from mnist_digits.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("bench") / "results"

_DEFINED = {section.name: section
            for section in (*training.SECTIONS, *images.SECTIONS, *serving.SECTIONS,
                            *backends.SECTIONS, *cluster.SECTIONS)}
if set(_DEFINED) != set(BENCH_SECTIONS):  # a section defined but not listed, or the reverse
    raise ImportError(f"bench sections defined {sorted(_DEFINED)} and listed in "
                      f"defaults.BENCH_SECTIONS {sorted(BENCH_SECTIONS)} differ")
# In the order a full run takes them.
SECTIONS: dict[str, Section] = {name: _DEFINED[name] for name in BENCH_SECTIONS}


def to_markdown(result: dict[str, Any]) -> str:
    """The bench result as Markdown: a header, then each section's own tables."""
    m = result["machine"]
    backend = m.get("backend", "tensorflow")
    lines = [f"# mnist-digits bench, {result['date']}", "",
             f"{m['cpu']}, {m['cores']} cores; Keras {m['keras']} on {backend} "
             f"{m.get(backend)}, NumPy {m['numpy']}, Python {m['python']}"
             + (" — **--quick: these numbers mean nothing**" if result["quick"] else ""), ""]
    for name, measured in result["sections"].items():
        lines += SECTIONS[name].markdown(measured)
    return "\n".join(lines)


def run_bench(*, model_path: str | None = None, model: Any = None, only: str | None = None,
              quick: bool = False,
              out_dir: str | os.PathLike = DEFAULT_OUT,
              results_dir: str | os.PathLike = "results",
              progress: Callable[[int, int, str], None] | None = None,
              ) -> tuple[dict[str, Any], Path]:
    """Runs the sections and writes `<out_dir>/<date>-<host>[-quick][-only].json` and `.md`.

    Args:
        model_path: the model for `realworld`, `inference` and `load` (run folder or .keras
            file); None means the `training` section's default-preset run, or `results/latest`.
        model: the model at `model_path`, if the caller has loaded it already.
        only: comma-separated section names, or None for all.
        quick: a tiny run for smoke tests.
        out_dir: where the result files go.
        results_dir: the training runs go to `<results_dir>/bench/<stamp>/`.
        progress: called with (sections done, sections, the section starting now).

    Returns:
        The result and the path of the JSON file.

    Raises:
        ConfigError: an unknown section name.
    """
    names = [n.strip() for n in only.split(",")] if only else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown bench section(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(SECTIONS)}")
    stamp = datetime.datetime.now()
    work_dir = Path(results_dir) / "bench" / f"{stamp:%Y%m%d-%H%M%S}"
    ctx = Context(quick=quick, work_dir=work_dir, model_path=model_path, _model=model)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"date": stamp.isoformat(timespec="seconds"), "quick": quick,
                              "machine": machine(), "sections": {}}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{stamp:%Y-%m-%d}-{result['machine']['host']}" + ("-quick" if quick else "") + \
        (f"-{'-'.join(names)}" if only else "")
    for done, name in enumerate(names):
        if progress:
            progress(done, len(names), name)
        log.info("bench: section %s", name)
        section = SECTIONS[name]
        start = time.perf_counter()
        measured = section.measure(ctx)
        measured["seconds"] = time.perf_counter() - start
        result["sections"][name] = measured
        for suffix, figure in (section.figures(measured) if section.figures else {}).items():
            runs.save_figure(figure, out_dir / f"{stem}-{suffix}")
    if progress:
        progress(len(names), len(names), "done")
    runs.write_json(out_dir / f"{stem}.json", result)
    runs.atomic_write_text(out_dir / f"{stem}.md", to_markdown(result))
    return result, out_dir / f"{stem}.json"
