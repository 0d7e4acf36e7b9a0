"""`puffer-cluster validate POLICY... --traces DIR`: the benchmark table on replayed SimKube
traces (`puffer_cluster.validate`). Exits 0 when at least one trace was validated, else 2 with
one line per reason on stderr."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from puffer_cluster.cli.common import add_paired_policy_arguments
from puffer_cluster.config import load_config, parse_duration
from puffer_cluster.replay import TRACE_SUFFIXES, replay_settings
from puffer_cluster.validate import validate


def add_parser(commands):
    parser = commands.add_parser(
        "validate", help="play policies on replayed SimKube traces and print the benchmark tables",
        description="Replay every SimKube trace under --traces (msgpack, sktrace or json, "
                    "recursively) as a gardener cluster and play each policy on the same seeds: "
                    "one table per trace, then an overall table. Files that are not replayable "
                    "traces are skipped with the reason. [replay] config keys tune the replay "
                    "(e.g. --replay.node-cpu 8).")
    parser.add_argument("--traces", required=True, type=Path,
                        help="a directory of trace files (searched recursively) or one trace file")
    add_paired_policy_arguments(parser, 20, "seeds per trace (>= 1)",
                                "also write every table and the config to this file")
    parser.add_argument("--speed", type=float,
                        help="replay speed, as SimKube's --speed (overrides replay.speed)")
    parser.add_argument("--duration",
                        help="replay only this much of each trace, as SimKube's --duration "
                             "(seconds, or 90s, 5m, 1h30m; overrides replay.duration)")
    parser.add_argument("--config", help="a config file overriding configs/gardener.ini")
    return parser


def run(args, overrides: list[str]) -> int:
    config = load_config(args.config, overrides)
    if args.speed is not None:
        config["replay"]["speed"] = float(args.speed)
    if args.duration is not None:
        config["replay"]["duration"] = parse_duration(args.duration)
    replay_settings(config)  # check the values before anything runs
    result = validate(args.policies, args.traces, args.episodes, args.seed, config)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "policies": args.policies, "episodes": args.episodes,
                       "seed": args.seed, "traces_dir": str(args.traces), "config": config},
                      f, indent=2)
    if result["traces"]:
        return 0
    for entry in result["skipped"]:
        print(f"error: {entry['file']}: {entry['reason']}", file=sys.stderr)
    if not result["skipped"]:
        print(f"error: no trace file ({', '.join(TRACE_SUFFIXES)}) under {args.traces}",
              file=sys.stderr)
    return 2
