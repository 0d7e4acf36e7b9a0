"""The training section of `bench/throughput.py`, on tiny runs."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_throughput_under_test", BENCH)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_iteration_speeds_time_every_iteration_after_the_first(bench):
    result = bench.iteration_speeds([10.0, 11.0, 11.5, 13.5], batch=1000, num_steps=10)
    assert result["window_speeds"] == [1000.0, 2000.0, 500.0]
    assert result["agent_steps_per_s"] == 2000.0
    assert result["mean_agent_steps_per_s"] == pytest.approx(3000 / 3.5)
    assert result["steps"] == 30


def test_a_run_stops_at_its_iteration_cap_or_after_enough_timed_seconds(bench):
    plan = bench.TrainPlan(grid_batches=(8,), max_iterations=5, seconds=2.0)
    assert not bench.training_done([0.0], plan)
    assert not bench.training_done([0.0, 5.0], plan)  # one timed iteration is not enough
    assert bench.training_done([0.0, 1.0, 2.0], plan)
    assert not bench.training_done([0.0, 0.5, 1.0], plan)
    assert bench.training_done([0.0, 0.1, 0.2, 0.3, 0.4], plan)


def test_a_skipped_pufferl_row_says_why_and_has_no_speed(bench):
    row = bench.training_row(bench.PUFFERL, 64, 1, {"skipped": "skipped: no kernel"}, "x", None)
    assert row["agent_steps_per_s"] is None and row["note"] == "skipped: no kernel"


TINY = dict(grid_batches=(64,), max_iterations=2, seconds=0.0)


def test_our_trainer_and_pufferls_are_timed_on_the_same_config(bench):
    plan = bench.TrainPlan(**TINY)
    ours = bench.measure_ours(64, 1, "none", plan)
    assert ours["agent_steps_per_s"] > 0 and ours["steps"] == 32  # one timed iteration of 32
    row = bench.training_row(bench.OURS, 64, 1, ours, "teacher none", None)
    assert row["baseline"] == (16, 64, 1) and "params" in row["note"]

    puffer = bench.measure_pufferl(64, 1, "ours", plan)
    if "skipped" in puffer:  # only a PufferLib build without its compiled kernel is skipped
        assert puffer["skipped"].startswith(("skipped: no compiled kernel",
                                             "skipped: train.trainer pufferl: pufferlib.pufferl "
                                             "does not import")), puffer["skipped"]
        return
    assert puffer["agent_steps_per_s"] > 0 and puffer["steps"] == 32
    assert puffer["params"] == ours["params"]  # the same network as ours
    assert "x ours" in bench.training_row(bench.PUFFERL, 64, 1, puffer, "our mlp", ours)["note"]
