"""The benchmark table: the shipped defaults keep random and heuristic apart, and `eval` reports it."""
import json

import numpy as np
import pytest

from puffer_cluster.kernels.policies import sweep_action
from puffer_cluster.kernels.world import DOWN, LEFT, RIGHT, UP
from puffer_cluster.cli import main as cli_main
from puffer_cluster.config import load_config
from puffer_cluster.evaluate import evaluate, format_table

SEEDS = 24


@pytest.fixture(scope="module")
def table():
    return {row["name"]: row for row in evaluate(["random", "heuristic"], SEEDS, 7, load_config())}


def test_random_collapses_early_and_the_heuristic_survives(table):
    random, heuristic = table["random"], table["heuristic"]
    assert 230 <= random["steps_mean"] <= 400
    assert random["collapsed_fraction"] > 0.9
    assert heuristic["steps_mean"] >= 420


def test_heuristic_has_fewer_ooms_lower_load_and_wins(table):
    random, heuristic = table["random"], table["heuristic"]
    assert heuristic["oom_rate"] < random["oom_rate"]
    assert heuristic["crit_rate"] < random["crit_rate"]
    assert heuristic["oom_count_mean"] < random["oom_count_mean"]
    assert heuristic["crit_count_mean"] < random["crit_count_mean"]
    assert heuristic["avg_load_mean"] < random["avg_load_mean"]
    assert heuristic["wins"] >= SEEDS - 1
    assert heuristic["reward_mean"] > random["reward_mean"]


def test_same_seeds_give_the_same_table():
    config = load_config(None, ["--env.height", "8", "--env.width", "8"])
    assert evaluate(["random", "heuristic"], 6, 3, config) == evaluate(["random", "heuristic"], 6, 3, config)


@pytest.mark.parametrize("height, width", [(4, 4), (5, 7), (16, 16), (9, 30)])
def test_sweep_tour_stays_inside_and_brings_every_node_into_view(height, width):
    moves = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}
    y, x, seen = height - 1, width - 1, set()
    for step in range(8 * height * width):
        dy, dx = moves[sweep_action(y, x, height, width)]
        y, x = y + dy, x + dx
        assert 0 <= y < height and 0 <= x < width
        if step >= 4 * height * width:  # on the closed tour by now
            seen.update((y + a, x + b) for a in (-1, 0, 1) for b in (-1, 0, 1))
    assert all((i, j) in seen for i in range(height) for j in range(width))


def test_eval_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "table.json"
    assert cli_main(["eval", "random", "heuristic", "--episodes", "4", "--seed", "1",
                     "--json", str(out), "--env.height", "8", "--env.width", "8"]) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if " | reward mu=" in line]
    assert [line.split()[0] for line in lines] == ["random", "heuristic"]
    assert "Heuristic win-rate: " in printed and "/4 (ties: " in printed
    data = json.loads(out.read_text())
    assert data["episodes"] == 4 and data["seed"] == 1
    assert data["config"]["env"]["height"] == 8
    heuristic = data["policies"][1]
    for key in ("reward_mean", "reward_std", "steps_mean", "oom_rate", "crit_rate",
                "avg_load_mean", "wins", "ties", "episodes"):
        assert key in heuristic
    assert f"reward mu={heuristic['reward_mean']:+.3f}" in printed


def test_eval_rejects_an_unknown_policy_or_a_broken_checkpoint(tmp_path, capsys):
    assert cli_main(["eval", "random", "greedy", "--episodes", "2"]) == 2
    assert "error: unknown policy 'greedy'" in capsys.readouterr().err
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00" * 10)
    assert cli_main(["eval", "random", str(broken), "--episodes", "2"]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err


def test_format_table_matches_the_seed_layout():
    row = dict(name="random", reward_mean=-12.456, reward_std=4.821, steps_mean=312.4,
               oom_rate=1.82, crit_rate=0.68, avg_load_mean=0.512, episodes=50)
    other = dict(row, name="heuristic", reward_mean=18.912, wins=50, ties=0)
    text = format_table([row, other])
    assert "random    | reward mu=-12.456 sigma=4.821 | steps mu=312.4 | oom_rate=1.82 | " \
           "crit_rate=0.68 | avg_load mu=0.512" in text
    assert "Heuristic win-rate: 50/50 (ties: 0)" in text


def test_shipped_checkpoint_beats_the_heuristic():
    """checkpoints/gardener_ppo.pt (README: how it was made) against the heuristic, paired seeds."""
    from pathlib import Path
    checkpoint = Path(__file__).resolve().parents[1] / "checkpoints" / "gardener_ppo.pt"
    heuristic, ppo = evaluate(["heuristic", str(checkpoint)], 12, 0, load_config())
    assert ppo["reward_mean"] > heuristic["reward_mean"]
    assert ppo["wins"] >= 7
    assert ppo["steps_mean"] >= 480
