"""Env-only throughput of the gardener world: agent-steps/s of every way to step it, in one report.

The report: the gardener's sections, then the other envs' and (with --train) the trainers', as
markdown tables on stdout and, with --json, one JSON file.

Only stepping is timed. Actions come from a small ring of arrays drawn beforehand; a warm-up
(first-call and JIT costs) precedes each row, which then steps for a fixed wall-clock budget
split into a few windows (`bench.timing`). Every row is compared with the Numba kernel measured
in the same run, and says with which configuration. Run it as `python -m bench.throughput`.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numba
import numpy as np

from bench.env_throughput import ENV_BENCHES, env_section
from bench.gardener_kernels import FULL, QUICK, Plan, gym_section, numba_section, reference_section
from bench.memory import peak_rss_section, state_size_section
from bench.pufferlib_comparison import squared_section, vector_section
from bench.report import Section, attach_ratios, markdown
from bench.timing import (
    ACTION_RING_SIZE, MIN_STEPS_PER_WINDOW, SEED, TIMING_WINDOWS, WARMUP_STEPS,
    machine_description, write_json,
)
from bench.training_sps import training_section
from puffer_cluster.kernels.policies import random_actions


def machine_header(plan: Plan, started: datetime.datetime, load_at_start: tuple) -> dict:
    # Numba picks its threading layer at the first parallel call.
    random_actions(SEED, 0, np.zeros(1, dtype=np.int32))
    return {
        "mode": plan.name, "date": started.isoformat(timespec="seconds"),
        **machine_description(load_at_start),
        "seconds_per_row": plan.seconds_per_row, "warmup_steps": WARMUP_STEPS,
        "timing_windows": TIMING_WINDOWS, "min_steps_per_window": MIN_STEPS_PER_WINDOW,
        "action_ring_size": ACTION_RING_SIZE,
    }


def header_markdown(header: dict) -> str:
    load = " / ".join(f"{value:.2f}" for value in header["load_average_at_start"])
    return "\n".join([
        f"## puffer-cluster env throughput ({header['mode']})",
        "",
        f"- machine: {header['cpu']}, {header['logical_cores']} logical cores "
        f"({header['usable_cores']} usable); load average at start {load} (1/5/15 min)",
        f"- date: {header['date']}",
        f"- versions: python {header['python']}, numpy {header['numpy']}, numba {header['numba']} "
        f"(threading layer {header['numba_threading_layer']}, up to {header['numba_max_threads']} "
        f"threads), pufferlib {header['pufferlib']}, torch {header['torch']}",
        f"- timing: {header['warmup_steps']} warm-up steps (first-call and JIT costs excluded), "
        f"then {header['seconds_per_row']:g} s of wall clock per row in {header['timing_windows']} "
        f"windows (each at least {header['min_steps_per_window']} steps); a row shows its best "
        "window and the spread (the worst window's shortfall: other processes share the "
        f"machine); actions are pre-drawn in a ring of {header['action_ring_size']} arrays; "
        "agent-steps/s = grids x steps / seconds (one agent per grid).",
    ])


def env_sections(plan: Plan) -> list[Section]:
    thread_counts = sorted({1, numba.config.NUMBA_NUM_THREADS})
    print("measuring (progress on stderr; the report follows on stdout)", file=sys.stderr)
    return [numba_section(plan, thread_counts), reference_section(plan), gym_section(plan),
            vector_section(plan, thread_counts), squared_section(plan), state_size_section(),
            peak_rss_section()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer sizes and short timings (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and header as JSON")
    parser.add_argument("--train", action="store_true",
                        help="append the training throughput section")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    started, load_at_start, clock = datetime.datetime.now(), os.getloadavg(), time.perf_counter()
    sections = env_sections(plan) + [env_section(name, args.quick) for name in ENV_BENCHES]
    if args.train:
        sections.append(training_section(args))
    attach_ratios(sections)
    header = machine_header(plan, started, load_at_start)
    wall_seconds = time.perf_counter() - clock

    print(header_markdown(header))
    for section in sections:
        print()
        print(markdown(section))
    print(f"\nwall time of the measurements: {wall_seconds:.1f} s")
    if args.json:
        write_json(args.json, {"header": header, "wall_seconds": wall_seconds,
                               "sections": [{"title": section.title, "notes": section.notes,
                                             "rows": section.rows} for section in sections]})
