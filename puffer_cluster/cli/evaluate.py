"""`puffer-cluster eval POLICY...`: the benchmark table on paired seeds."""
from __future__ import annotations

import json

from puffer_cluster.cli.common import CONFIG_HELP, CLIError, add_paired_policy_arguments
from puffer_cluster.config import load_config


def add_parser(commands):
    parser = commands.add_parser(
        "eval", help="play policies on the same seeds and print the benchmark table",
        description="Play each policy on the same --episodes starting worlds and world "
                    "randomness (the grids of one env seeded --seed) and print the benchmark "
                    "table; wins are counted pair by pair against the first policy.")
    add_paired_policy_arguments(parser, 50, "episodes per policy, played in one batch (>= 1)",
                                "also write the numbers and the config to this file")
    parser.add_argument("--records", metavar="DIR",
                        help="SimArena only: also play the episodes one by one and record each "
                             "policy's run (step.jsonl, summary.json) in a new directory in DIR")
    parser.add_argument("--config", help=CONFIG_HELP)
    return parser


def run(args, overrides: list[str]) -> int:
    from puffer_cluster.evaluate import evaluate, format_table
    config = load_config(args.config, overrides)
    if args.records and config["base"]["env_name"] != "simarena":
        raise CLIError("--records: run records are SimArena's (use --config simarena)")
    rows = evaluate(args.policies, args.episodes, args.seed, config)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"policies": rows, "episodes": args.episodes, "seed": args.seed,
                       "config": config}, f, indent=2)
    if args.records:
        from puffer_cluster.record import record_simarena_episodes
        for spec in args.policies:
            try:
                run_dir = record_simarena_episodes(spec, args.episodes, args.seed, config, args.records)
            except OSError as exc:
                raise CLIError(f"cannot write the records in {args.records}: {exc}", 1) from None
            print(f"records of {spec}: {run_dir}")
    return 0
