"""`puffer-cluster`: the command line. Config keys are overridden PufferLib-style with
`--section.key value` after the command's own options."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from puffer_cluster.config import ConfigError, apply_overrides, load_config
from puffer_cluster.policies import PolicyError
from trainers.checkpoint import CheckpointError

# torch.cuda imports pynvml, which warns about its own deprecation: noise for our users.
warnings.filterwarnings("ignore", message="The pynvml package is deprecated", category=FutureWarning)


def cmd_eval(args, overrides: list[str]) -> int:
    from puffer_cluster.evaluate import evaluate, format_table
    config = load_config(args.config, overrides)
    rows = evaluate(args.policies, args.episodes, args.seed, config)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"policies": rows, "episodes": args.episodes, "seed": args.seed,
                       "config": config}, f, indent=2)
    return 0


def cmd_train(args, overrides: list[str]) -> int:
    """Train, then print the final policy against the heuristic on the benchmark's episodes
    (`[eval] episodes` and `seed`) and the run directory. A signal exits 128 + its number."""
    from puffer_cluster.evaluate import evaluate, format_table
    from trainers.checkpoint import load_checkpoint
    from trainers.ppo import train
    from trainers.stopping import TrainingInterrupted
    if args.resume:
        if args.config:
            raise ConfigError("--resume continues with the checkpoint's own config; "
                              "drop --config (overrides are still accepted)")
        saved, defaults = load_checkpoint(args.resume, True)["config"], load_config()
        # Keys added since the checkpoint was written take their defaults.
        config = apply_overrides({section: {**values, **saved.get(section, {})}
                                  for section, values in defaults.items()}, overrides)
    else:
        config = load_config(args.config, overrides)
    try:  # train() checks the whole config before it creates anything
        run_dir = train(config, resume=args.resume)
    except TrainingInterrupted as stop:
        print(stop, flush=True)
        return 128 + stop.signum
    episodes, seed = config["eval"]["episodes"], config["eval"]["seed"]
    print(f"final policy against the heuristic on the benchmark's {episodes} episodes "
          f"from seed {seed}:", flush=True)
    print(format_table(evaluate(["heuristic", str(run_dir / "final.pt")], episodes, seed, config)))
    print(f"run directory: {run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="puffer-cluster",
        description="Autonomous Kubernetes cluster maintenance as a fast RL environment.",
        epilog="Any config key can follow a command's options as --section.key value "
               "(e.g. --env.height 32 --train.total-timesteps 5e6).")
    commands = parser.add_subparsers(dest="command", required=True)

    training = commands.add_parser("train", help="train PPO (the main job)")
    training.add_argument("--config", help="a config file overriding configs/gardener.ini "
                                           "(e.g. configs/quick.ini)")
    training.add_argument("--resume", help="continue a run from its latest.pt")
    training.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "eval", help="play policies on the same seeds and print the benchmark table")
    evaluate.add_argument("policies", nargs="+",
                          help="'random', 'heuristic' or a checkpoint path; wins are counted "
                               "against the first one")
    evaluate.add_argument("--episodes", type=int, default=50)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--json", help="also write the numbers and the config to this file")
    evaluate.add_argument("--config", help="a config file overriding configs/gardener.ini")
    evaluate.set_defaults(handler=cmd_eval)

    from puffer_cluster.traces.commands import add_traces_parser
    add_traces_parser(commands)
    from puffer_cluster.validate import add_validate_parser
    add_validate_parser(commands)
    from puffer_cluster.simkube_run import add_simkube_parser
    add_simkube_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if hasattr(args, "handler"):
            return args.handler(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args.func(args)
    except (ConfigError, PolicyError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
