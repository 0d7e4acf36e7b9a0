"""Run records (puffer_cluster.run_records): a directory per run, step.jsonl line by line and
summary.json whatever the end, and offline SimArena episodes recorded through `eval --records`
with the numbers of the eval table."""
from __future__ import annotations

import json

import pytest

from puffer_cluster import cli
from puffer_cluster.run_records import STEPS_FILE, SUMMARY_FILE, RunRecorder, new_run_dir

SMALL = ["--simarena.count", "3", "--simarena.max_steps", "8"]


def step(episode, reward, terminated=False, truncated=False):
    return {"episode": episode, "step": 1, "reward": reward, "terminated": terminated,
            "truncated": truncated}


def test_every_run_gets_its_own_directory(tmp_path):
    first, second = new_run_dir(tmp_path, "loop-web"), new_run_dir(tmp_path, "loop-web")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("loop-web-") and second.parent == first.parent


def test_the_summary_counts_episodes_and_says_how_the_run_ended(tmp_path):
    recorder = RunRecorder(new_run_dir(tmp_path, "run"), {"policy": "noop"})
    recorder.step(step(0, -0.5))
    recorder.step(step(0, 1.0, terminated=True))
    recorder.step(step(1, -0.25))  # cut short
    assert len((recorder.run_dir / STEPS_FILE).read_text().splitlines()) == 3  # flushed already
    summary = recorder.close("interrupted")
    written = json.loads((recorder.run_dir / SUMMARY_FILE).read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["status"] == "interrupted" and written["steps"] == 3
    assert [(e["steps"], e["return"], e["solved"], e["finished"]) for e in written["episodes"]] == \
        [(2, 0.5, True, True), (1, -0.25, False, False)]
    assert written["return_mean"] == 0.5 and written["solved_rate"] == 1.0  # finished ones only


def test_eval_records_offline_episodes_with_the_tables_numbers(tmp_path, capsys):
    table = tmp_path / "table.json"
    code = cli.main(["eval", "heuristic", "reduce_cpu", "--episodes", "3", "--config", "simarena",
                     "--json", str(table), "--records", str(tmp_path / "runs"), *SMALL])
    out = capsys.readouterr().out
    assert code == 0 and out.count("records of ") == 2
    rows = {row["name"]: row for row in json.loads(table.read_text())["policies"]}
    for run_dir in (tmp_path / "runs").iterdir():
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        steps = [json.loads(line) for line in (run_dir / STEPS_FILE).read_text().splitlines()]
        row = rows[summary["meta"]["policy"]]
        assert summary["status"] == "done" and len(summary["episodes"]) == 3
        assert summary["return_mean"] == pytest.approx(row["reward_mean"], abs=1e-6)
        assert summary["solved_rate"] == row["solved_rate"]
        assert summary["steps"] == len(steps) == round(row["steps_mean"] * 3)
        for before, after in zip(steps, steps[1:]):
            if after["episode"] == before["episode"]:  # a step starts where the last one ended
                assert after["observation"] == before["next_observation"]
                assert after["trace_in"] == before["trace_out"]
        assert all(s["trace_in"]["file"] is None and len(s["observation"]["vector"]) == 14 for s in steps)


def test_records_are_simarenas_only(tmp_path, capsys):
    code = cli.main(["eval", "heuristic", "--episodes", "1", "--records", str(tmp_path)])
    assert code == 2 and "--config simarena" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
