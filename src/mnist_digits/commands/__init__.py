"""The subcommands: one module each, with `add_parser(sub)` beside the handler it sets.

A module's `add_parser` registers its parser and sets, as parser defaults:

- `run(args) -> int`: the handler; it calls library functions and prints;
- `prepare(args, backend_name)` (optional): what must happen before Keras starts: checks that
  need no model (so a mistake is reported in a moment), and process set-up;
- `needs_keras` (optional, default True): False for commands that never import Keras.

The order here is the order of `mnist-digits --help`.
"""

from mnist_digits.commands import (
    bench,
    compare,
    data,
    ensemble,
    evaluate,
    export,
    info,
    list_models,
    package_model,
    predict,
    serve,
    sweep,
    train,
)

MODULES = (train, data, info, evaluate, list_models, compare, ensemble, sweep, predict, serve,
           export, package_model, bench)
