"""`torchrun --nproc_per_node N tests/torchrun_train.py ROOT [--section.key value ...]`: the
resume check of the multi-process tests in one launch (imports cost more than the runs):
ROOT/full trains a tiny PPO run uninterrupted, ROOT/split stops after update 3 and resumes
from its latest.pt, then a resume from two different latest.pt files is refused. The process
group is joined here once; `train()` uses it. Its threads are gone once it is left."""
import shutil
import sys
import time
from pathlib import Path

import torch

from puffer_cluster.config import ConfigError, load_config
from puffer_cluster.trainers import ppo
from puffer_cluster.trainers.checkpoint import load_checkpoint
from puffer_cluster.trainers.distributed import Ranks, process_group

TINY = ["--env.num-envs", "32", "--env.log-interval", "8", "--env.height", "6",
        "--env.width", "6", "--env.max-steps", "20", "--train.num-steps", "8",
        "--train.total-timesteps", str(32 * 8 * 6), "--train.checkpoint-interval", "2",
        "--train.torch-threads", "1", "--train.device", "cpu", "--train.eval-interval", "0",
        "--train.collective-timeout", "120"]


def slow_save(save):
    """Rank 0 writes latest.pt a second late: a process must not return from train() (and read
    latest.pt) before rank 0 has written it."""
    def save_late(*args, **kwargs):
        time.sleep(1.0)
        return save(*args, **kwargs)
    return save_late


root = Path(sys.argv[1])
config = load_config(None, TINY + sys.argv[2:])
ranks = Ranks.from_environment()
with process_group(ranks, torch.device("cpu"), config["train"]["collective_timeout"]):
    ppo.train(config, run_dir=root / "full", quiet=True)
    ppo.save_training_state = slow_save(ppo.save_training_state)
    ppo.train(config, run_dir=root / "split", quiet=True,
              should_stop=lambda iteration: iteration == 3)
    latest = root / "split" / "latest.pt"
    assert load_checkpoint(latest)["iteration"] == 3, f"rank {ranks.rank} read an older latest.pt"
    if ranks.main:
        shutil.copy(latest, root / "stale.pt")
    ppo.train(config, resume=str(latest), quiet=True)
    try:  # rank 1 reads a stale copy of latest.pt: every process refuses in one line
        ppo.train(config, resume=str(root / ("stale.pt" if ranks.rank else "split/latest.pt")),
                  quiet=True)
        raise AssertionError("a resume from different latest.pt files ran")
    except ConfigError as error:
        assert "different updates" in str(error), error

# The group's threads ended with it: gloo's threads still running when the interpreter exits
# abort it now and then.
tasks = Path("/proc/self/task")
if tasks.exists():
    names = sorted((task / "comm").read_text().strip() for task in tasks.iterdir())
    assert not any("gloo" in name for name in names), f"rank {ranks.rank} threads: {names}"
