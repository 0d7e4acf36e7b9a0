"""Our trainer in every process of a torchrun launch, timed per iteration (`bench.training_sps`):

    python -m torch.distributed.run --nproc_per_node 2 -m bench.torchrun_child '{"grids": 1024, "plan": {...}}'

Each process steps its share of the run's grids; rank 0 prints one JSON line: the speeds.
"""
from __future__ import annotations

import json
import os
import sys

from bench.training_sps import TrainPlan, measure_ours


def torchrun_child(spec_text: str) -> None:
    spec = json.loads(spec_text)
    result = measure_ours(spec["grids"], 1, "none", TrainPlan(**spec["plan"]))
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    torchrun_child(sys.argv[1])
