"""2,000 malformed traces (tools/trace_fuzz.py: truncations, byte flips, wrong types deep inside
pod specs, huge numbers, deep nesting, lone surrogates) through load, inspect, convert and
replay: every refusal is a TraceError (a ReplayError is one), nothing else escapes. The slowest
input is measured outside the tests: `python tools/trace_fuzz.py`."""
from __future__ import annotations

import collections
import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "trace_fuzz.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("trace_fuzz", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_malformed_traces_only_ever_raise_typed_errors():
    fuzz = load_tool()
    outcomes, untyped = collections.Counter(), []
    for n, data in enumerate(fuzz.malformed_traces(seed=0, count=2000)):
        try:
            outcomes[fuzz.run_pipeline(data)] += 1
        except Exception as error:  # noqa: BLE001 - the point of the test
            untyped.append(f"input {n}: {type(error).__name__}: {error}"[:300])
    assert untyped == []
    # The corpus reaches every stage: refused at load, refused by the replay, replayed.
    stages = collections.Counter(stage for stage, _ in outcomes.elements())
    assert stages["load"] > 500 and stages["replay"] > 100 and stages["replayed"] > 100
    assert outcomes[("replay", "ReplayError")] > 100


def test_the_corpus_is_reproducible_and_varied():
    fuzz = load_tool()
    first = list(fuzz.malformed_traces(seed=3, count=200))
    assert first == list(fuzz.malformed_traces(seed=3, count=200))
    assert first != list(fuzz.malformed_traces(seed=4, count=200))
    assert len(set(first)) > 150
    assert any(b"\\ud" in data.lower() for data in first)           # surrogate escapes
    assert any(data.count(b"[") > 1000 or data.count(b"\x91") > 1000 for data in first)  # nesting
