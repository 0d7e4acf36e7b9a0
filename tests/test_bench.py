"""The throughput report: its shared timer, its entry points and its training section
(`bench.training_sps`) on tiny runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import training_sps
from bench.timing import timed

REPO = Path(__file__).resolve().parents[1]


def test_the_timer_warms_up_then_keeps_the_best_of_its_windows():
    """A fake clock ticking one second per read: each window of 3 s / 3 windows lasts until its
    second step (min_steps 2), 2 steps in 2 s; the calls before the windows are the warm-up."""
    ticks = iter(range(1000))
    calls = []
    result = timed(calls.append, agents_per_step=10, seconds=3.0, min_steps=2, warmup_steps=2,
                   clock=lambda: next(ticks))
    assert calls[:2] == [0, 1] and calls[2:] == [0, 1] * 3
    assert result == {"agent_steps_per_s": 10.0, "window_speeds": [10.0] * 3, "steps": 6}


@pytest.mark.parametrize("entry", ["script", "module"])
def test_the_report_runs_as_a_script_and_as_a_module(entry, tmp_path):
    """Both entry points import every section's module and parse the options; the script from
    another directory too."""
    command, cwd = (([str(REPO / "bench" / "throughput.py")], tmp_path) if entry == "script"
                    else (["-m", "bench.throughput"], REPO))
    run = subprocess.run([sys.executable, *command, "--help"], cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "--quick" in run.stdout and "--train" in run.stdout


def test_iteration_speeds_time_every_iteration_after_the_first():
    result = training_sps.iteration_speeds([10.0, 11.0, 11.5, 13.5], batch=1000, num_steps=10)
    assert result["window_speeds"] == [1000.0, 2000.0, 500.0]
    assert result["agent_steps_per_s"] == 2000.0
    assert result["mean_agent_steps_per_s"] == pytest.approx(3000 / 3.5)
    assert result["steps"] == 30


def test_a_run_stops_at_its_iteration_cap_or_after_enough_timed_seconds():
    plan = training_sps.TrainPlan(grid_batches=(8,), max_iterations=5, seconds=2.0)
    assert not training_sps.training_done([0.0], plan)
    assert not training_sps.training_done([0.0, 5.0], plan)  # one timed iteration is not enough
    assert training_sps.training_done([0.0, 1.0, 2.0], plan)
    assert not training_sps.training_done([0.0, 0.5, 1.0], plan)
    assert training_sps.training_done([0.0, 0.1, 0.2, 0.3, 0.4], plan)


def test_a_skipped_pufferl_row_says_why_and_has_no_speed():
    skipped = {"skipped": "skipped: no kernel"}
    row = training_sps.training_row(training_sps.PUFFERL, 64, 1, skipped, "x", None)
    assert row["agent_steps_per_s"] is None and row["note"] == "skipped: no kernel"


TINY = dict(grid_batches=(64,), max_iterations=2, seconds=0.0)


def test_our_trainer_and_pufferls_are_timed_on_the_same_config():
    plan = training_sps.TrainPlan(**TINY)
    ours = training_sps.measure_ours(64, 1, "none", plan)
    assert ours["agent_steps_per_s"] > 0 and ours["steps"] == 32  # one timed iteration of 32
    row = training_sps.training_row(training_sps.OURS, 64, 1, ours, "teacher none", None)
    assert row["baseline"] == (16, 64, 1) and "params" in row["note"]

    puffer = training_sps.measure_pufferl(64, 1, "ours", plan)
    if "skipped" in puffer:  # only a PufferLib build without its compiled kernel is skipped
        assert puffer["skipped"].startswith(("skipped: no compiled kernel",
                                             "skipped: train.trainer pufferl: pufferlib.pufferl "
                                             "does not import")), puffer["skipped"]
        return
    assert puffer["agent_steps_per_s"] > 0 and puffer["steps"] == 32
    assert puffer["params"] == ours["params"]  # the same network as ours
    row = training_sps.training_row(training_sps.PUFFERL, 64, 1, puffer, "our mlp", ours)
    assert "x ours" in row["note"]
