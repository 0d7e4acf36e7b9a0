"""Throughput benches: modules run from the repo root with `python -m bench.<module>`.

- `throughput`: the whole report (`throughput_report`): the gardener's kernels
  (`gardener_kernels`), PufferLib's vectorization and Ocean Squared (`pufferlib_comparison`),
  memory (`memory`), the other envs (`env_throughput`) and training (`training_sps`, with
  `pufferl_child` run in its own interpreter). `python bench/throughput.py` runs it too.
- `env_throughput`: one registered env's table on its own.
- `world_v2`: the event kernel against the dense one.

Every bench times with `timing` and builds its tables with `report`.
"""
