"""Constants that the command line, the library and the bench share, in a module that imports
nothing: the CLI reads them before any framework loads, and each has this one home."""

# The default operating point, chosen on the packaged model's `mnist-digits bench` curve: the
# lowest threshold at which over 90% of non-digits are rejected (0.6: 90.9%, 0.5: 89.3%), so
# that as few digits as possible are (user-style 0.30%, MNIST test 0.33%). docs/benchmarks.md has
# the curve.
DEFAULT_THRESHOLD = 0.6

# Where run folders go unless `--results-dir` says otherwise.
DEFAULT_RESULTS_DIR = "results"

# The name that means the packaged, calibrated reading model wherever a model is taken
# (`--model`, `--teacher`, `mnist_digits.read(model=...)`).
PACKAGED = "packaged"

# `mnist-digits bench` sections, in run order; `bench.runner` maps each to its function.
BENCH_SECTIONS = ("training", "ablation", "best", "feedforward", "calibration", "realworld",
                  "numbers", "rejection", "inference", "load", "backends", "cluster")
