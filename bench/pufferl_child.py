"""PufferLib's own trainer, `PuffeRL`, on our env and config, timed per iteration; run in a fresh
interpreter by `bench.training_sps` (importing pufferlib.pufferl turns RuntimeWarnings into errors
and installs a SIGINT handler, process-wide):

    python -m bench.pufferl_child '{"grids": 1024, "threads": 1, "policy": "ours", "plan": {...}}'

It prints one JSON line: the speeds, or {"skipped": reason}.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench.training_sps import (
    TrainPlan, iteration_speeds, set_threads, training_config, training_done,
)
from puffer_cluster.kernels.world import OBS_SIZE


def pufferl_child(spec_text: str) -> None:
    """Time `PuffeRL.evaluate()` + `train()` iterations of the run `spec_text` (JSON) asks for;
    one JSON line on stdout."""
    spec = json.loads(spec_text)
    plan = TrainPlan(**spec["plan"])
    out, sys.stdout = sys.stdout, sys.stderr  # whatever PufferLib prints goes to stderr

    def reply(**result):
        print(json.dumps(result), file=out, flush=True)

    from puffer_cluster.config import ConfigError
    from puffer_cluster.trainers.pufferl import (
        PuffeRLPolicy, PuffeRLSettings, import_pufferl, make_puffer_vecenv, new_puffer_rl,
        puffer_train_config, pufferl_run_config,
    )
    try:
        pufferl = import_pufferl()  # fails without its compiled kernel
    except ConfigError as error:
        return reply(skipped=str(error))
    import pufferlib.models
    import torch
    try:
        torch.ops.pufferlib.compute_puff_advantage
    except (AttributeError, RuntimeError) as error:
        return reply(skipped="no compiled kernel torch.ops.pufferlib.compute_puff_advantage: "
                             f"{error}")
    from puffer_cluster.config import settings_from
    from puffer_cluster.trainers.models import make_policy

    # The config `train --train.trainer pufferl` runs: the same network and observation as ours.
    config = pufferl_run_config(training_config(spec["grids"], spec["threads"], "none",
                                                plan.max_iterations))
    ours = config["train"]
    set_threads(spec["threads"])
    torch.manual_seed(ours["seed"])
    vecenv = make_puffer_vecenv(config)  # the native GardenerEnv, as ours steps it
    hidden = config["policy"]["hidden_size"]
    if spec["policy"] == "default":
        policy = pufferlib.models.Default(vecenv, hidden_size=hidden)
    else:
        policy = PuffeRLPolicy(make_policy(config["policy"], OBS_SIZE,
                                           vecenv.single_action_space.n))
    num_steps = ours["num_steps"]
    batch = vecenv.num_agents * num_steps
    # PuffeRL's config as the pufferl trainer builds it ([pufferl] and the shared [train] keys),
    # one iteration more than run, so that PuffeRL.train's end-of-training checkpoint is not
    # timed; quiet, as ours runs with quiet=True: no dashboard.
    settings = settings_from(PuffeRLSettings, config, bptt_horizon=num_steps)
    stamps = []
    with tempfile.TemporaryDirectory(prefix="bench-pufferl-") as data_dir:
        trainer = new_puffer_rl(pufferl, puffer_train_config(
            config, settings, torch.device("cpu"), plan.max_iterations + 1, Path(data_dir)),
            vecenv, policy)
        try:
            while not stamps or not training_done(stamps, plan):
                trainer.evaluate()
                trainer.train()
                stamps.append(time.perf_counter())
        finally:
            trainer.close()
    reply(**iteration_speeds(stamps, batch, num_steps),
          params=sum(p.numel() for p in policy.parameters()))


if __name__ == "__main__":
    pufferl_child(sys.argv[1])
