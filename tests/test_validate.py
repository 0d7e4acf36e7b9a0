"""`puffer-cluster validate`: the benchmark table per replayed trace and overall, bad files skipped
with their reason, JSON output, exit codes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgpack
import pytest

from puffer_cluster.cli import main
from puffer_cluster.config import load_config
from puffer_cluster.replay import find_trace_files
from puffer_cluster.validate import validate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BARE_PODS = DATA / "simkube" / "examples_traces_bare-pods.sktrace"
FAST = ["--env.max-steps", "48"]  # short episodes keep the test quick


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (the traces live in ../shared/data, "
                    "next to the project; see shared/data/README.md)")
    return path


def tables(text: str) -> int:
    return text.count("BENCHMARK RESULTS (random vs heuristic)")


def test_validate_prints_a_table_per_trace_and_overall(capsys, tmp_path):
    out = tmp_path / "result.json"
    code = main(["validate", "random", "heuristic", "--traces", str(need(DATA)), "--episodes", "3",
                 "--json", str(out), *FAST])
    text = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    validated = [entry["file"] for entry in result["traces"]]
    skipped = {entry["file"]: entry["reason"] for entry in result["skipped"]}
    # Every candidate file is either validated or skipped with a reason.
    candidates = [p.relative_to(DATA).as_posix() for p in find_trace_files(DATA)]
    assert sorted(validated + list(skipped)) == sorted(candidates)
    for name in ("simkube/examples_traces_cronjob.sktrace", "simkube/examples_traces_bare-pods.sktrace",
                 "sim-arena/demo_trace-v2.msgpack"):
        assert name in validated
    assert "sim-arena/benchmark_scenarios_index.json" in skipped
    assert "trace sim-arena/benchmark_scenarios_index.json: skipped: " in text
    assert tables(text) == len(validated) + 1  # one per trace, one overall
    for name in validated:
        assert f"\ntrace {name}: " in text
    assert f"overall: {len(validated)} traces x 3 episodes" in text
    for entry in result["traces"]:
        random_row, heuristic_row = entry["policies"]
        assert random_row["name"] == "random" and heuristic_row["name"] == "heuristic"
        assert random_row["episodes"] == 3 and "wins" in heuristic_row
        summary = entry["summary"]
        assert summary["horizon"] == 48
        assert summary["events_replayed"] == summary["events_total"]  # whole traces
        assert max(summary["peak_trace_cpu"], summary["peak_trace_mem"]) <= 0.7 + 1e-6
        assert summary["overlay_scale"] == 0.25 and 0 < summary["overlay_mem_end"] < 0.1
    v2 = next(e["summary"] for e in result["traces"] if e["file"] == "sim-arena/demo_trace-v2.msgpack")
    # 26 pods, 3,920 MiB at the peak, the largest 450 MiB: 8.7 of them, fewer than 4x4 nodes.
    assert v2["grid"] == "4x4" and v2["max_running"] == 26
    assert max(v2["peak_trace_cpu"], v2["peak_trace_mem"]) > 0.1
    # Traces of different loads give different tables.
    tables_by_file = {entry["file"]: entry["policies"] for entry in result["traces"]}
    assert tables_by_file["simkube/examples_traces_cronjob.sktrace"] \
        != tables_by_file["sim-arena/demo_trace-v2.msgpack"]
    overall = result["overall"]
    assert overall[1]["episodes"] == 3 * len(validated)
    assert result["config"]["env"]["max_steps"] == 48 and "replay" in result["config"]
    assert result["policies"] == ["random", "heuristic"] and result["episodes"] == 3


def test_same_seeds_give_the_same_tables(tmp_path):
    trace_dir = tmp_path / "traces"
    trace_dir.mkdir()
    shutil.copy(need(BARE_PODS), trace_dir)
    config = load_config(overrides=FAST)
    first = validate(["random", "heuristic"], trace_dir, 4, 7, config, echo=lambda *_: None)
    again = validate(["random", "heuristic"], trace_dir, 4, 7, config, echo=lambda *_: None)
    assert first == again
    other = validate(["random"], trace_dir, 4, 8, config, echo=lambda *_: None)
    assert other["traces"][0]["policies"][0] != first["traces"][0]["policies"][0]


def test_bad_files_are_skipped_with_a_clear_message(capsys, tmp_path):
    # SimKube <= 1.1.1 wrote a bare array (config, events, index); sim-arena's v1 has only events.
    (tmp_path / "old.sktrace").write_bytes(msgpack.packb([{"trackedObjects": {}}, [], {}]))
    (tmp_path / "arena-v1.json").write_text(json.dumps({"version": 1, "events": []}))
    (tmp_path / "garbage.msgpack").write_bytes(b"\xc1 not msgpack")
    code = main(["validate", "random", "heuristic", "--traces", str(tmp_path), *FAST])
    captured = capsys.readouterr()
    assert code == 2  # nothing could be validated: one line per reason on stderr
    assert "trace old.sktrace: skipped: TraceVersionError: this is a version 1 SimKube trace" \
        in captured.out
    assert "trace arena-v1.json: skipped: TraceVersionError: this is a sim-arena version 1 trace" \
        in captured.out
    assert "trace garbage.msgpack: skipped: TraceFormatError" in captured.out
    assert tables(captured.out) == 0
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert "error: garbage.msgpack: TraceFormatError" in captured.err

    # A good trace next to the bad ones is still validated.
    shutil.copy(need(BARE_PODS), tmp_path)
    code = main(["validate", "random", "heuristic", "--traces", str(tmp_path), "--episodes", "2", *FAST])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.count(": skipped: ") == 3 and captured.err == ""
    assert tables(captured.out) == 2
    assert "overall: 1 traces x 2 episodes (3 files skipped)" in captured.out


def test_speed_and_duration_options(tmp_path):
    out = tmp_path / "r.json"
    code = main(["validate", "heuristic", "--traces", str(need(BARE_PODS)), "--episodes", "2",
                 "--duration", "1m", "--speed", "2", "--json", str(out), *FAST])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["config"]["replay"]["duration"] == 60.0
    assert result["config"]["replay"]["speed"] == 2.0
    (entry,) = result["traces"]
    assert entry["summary"]["horizon"] == 30 and entry["summary"]["events_replayed"] == 2
    assert entry["summary"]["events_total"] == 4
    assert "2 of 4 trace events are not replayed" in entry["summary"]["warnings"][-1]


def test_errors(capsys, tmp_path):
    assert main(["validate", "nonsense", "--traces", str(tmp_path)]) == 2
    assert "unknown policy 'nonsense'" in capsys.readouterr().err
    assert main(["validate", "random", "--traces", str(tmp_path / "absent")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["validate", "random", "--traces", str(tmp_path), "--replay.speed", "0"]) == 2
    assert "speed" in capsys.readouterr().err
    assert main(["validate", "random", "--traces", str(tmp_path)]) == 2
    assert "no trace file" in capsys.readouterr().err
