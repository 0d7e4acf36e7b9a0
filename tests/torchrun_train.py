"""`torchrun --nproc_per_node N tests/torchrun_train.py ROOT [--section.key value ...]`: the
resume check of the multi-process tests in one launch (imports cost more than the runs):
ROOT/full trains a tiny PPO run uninterrupted, ROOT/split stops after update 3 and resumes
from its latest.pt. The process group is joined here once; `train()` uses it."""
import sys
from pathlib import Path

import torch.distributed as dist

from puffer_cluster.config import load_config
from trainers.ppo import train

TINY = ["--env.num-envs", "32", "--env.log-interval", "8", "--env.height", "6",
        "--env.width", "6", "--env.max-steps", "20", "--train.num-steps", "8",
        "--train.total-timesteps", str(32 * 8 * 6), "--train.checkpoint-interval", "2",
        "--train.torch-threads", "1", "--train.device", "cpu", "--train.eval-interval", "0"]

root = Path(sys.argv[1])
config = load_config(None, TINY + sys.argv[2:])
dist.init_process_group("gloo")
train(config, run_dir=root / "full", quiet=True)
train(config, run_dir=root / "split", quiet=True, should_stop=lambda iteration: iteration == 3)
train(config, resume=str(root / "split" / "latest.pt"), quiet=True)
dist.destroy_process_group()
