"""Many trainings at once: jobs and sweeps on a Ray cluster (`jobs`, `sweep`), and the
connection to it (`connect`).

Nothing here is imported unless a command asks for `--cluster` or `sweep`; Ray is the
`[cluster]` extra.
"""
