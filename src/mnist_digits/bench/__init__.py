"""`mnist-digits bench`: the measured figures the docs and issues quote. Not the product.

The product never imports this package, nor do the tests' helpers; the `bench` command
(`commands/bench.py`) dispatches to `runner`.

- `runner`: runs the chosen sections, writes `bench/results/<date>-<host>.json` and `.md`.
- `context`: what every section gets (options, work folder, the model under test) and the
  `Section` record: a section measures, then renders its own Markdown and figures.
- `training`: training speed and accuracy against reference recipes, ablations, the best
  presets and their ensembles, the best feedforward net, calibration of every preset. Each run
  in a fresh child process (in process for `--quick`, whose figures mean nothing).
- `images`: reading user-style images, tight crops, handwritten numbers; rejecting non-digits.
- `serving`: inference speed, and the web server under load (`loadtest`).
- `backends`: training and inference on each Keras backend, each in its own process.
- `cluster`: jobs on a loopback Ray cluster (`cluster.loopback`) against one after another.
- `userimages`: the synthetic test images those sections measure with.
"""
