"""`puffer-cluster`: the command line. Config keys are overridden PufferLib-style with
`--section.key value` after the command's own options."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from puffer_cluster import __version__
from puffer_cluster.config import ConfigError, apply_overrides, load_config, shipped_configs
from puffer_cluster.policies import PolicyError, shipped_checkpoints
from trainers.checkpoint import CheckpointError

# torch.cuda imports pynvml, which warns about its own deprecation: noise for our users.
warnings.filterwarnings("ignore", message="The pynvml package is deprecated", category=FutureWarning)

CONFIG_HELP = ("a config overriding configs/gardener.ini: a shipped one by name ("
               + ", ".join(shipped_configs()) + ") or a path")
POLICY_HELP = ("'random', 'heuristic', a shipped checkpoint by name ("
               + ", ".join(shipped_checkpoints()) + ") or a checkpoint path")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it has none or already names it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """Usage errors in one line on stderr (exit status 2), help with defaults, for every
    subcommand (subparsers are made of the parent's class)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


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
    from trainers.checkpoint import load_checkpoint
    from trainers.ppo import train
    if args.resume:
        if args.config:
            raise ConfigError("--resume continues with the checkpoint's own config; "
                              "drop --config (overrides are still accepted)")
        config = apply_overrides(load_checkpoint(args.resume, True)["config"], overrides)
    else:
        config = load_config(args.config, overrides)
    run_dir = train(config, resume=args.resume)
    print(f"run directory: {run_dir}")
    return 0


def _train_description() -> str:
    sections = ", ".join(f"[{section}]" for section in load_config())
    return ("Train PPO on the env of the config (the gardener world by default; SimArena with "
            "--config simarena). The config is configs/gardener.ini, which documents every key, "
            "updated by --config, then by any key given after the options as --section.key value "
            "(dashes or underscores; --section.key=value works too), e.g. "
            "--train.total-timesteps 5e6 --env.height 32 --policy.name lstm. Config sections: "
            f"{sections}. Each run writes runs/<env_name>__<name>__<seed>__<time>/ under the "
            "current directory ([train] data_dir, default ./runs): TensorBoard events, the "
            "resolved config.ini, best.pt, final.pt and latest.pt.")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="puffer-cluster",
        description="Autonomous Kubernetes cluster maintenance as a fast RL environment.",
        epilog="Any config key can follow a command's options as --section.key value "
               "(e.g. --env.height 32 --train.total-timesteps 5e6). "
               "`puffer-cluster COMMAND --help` tells more.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    training = commands.add_parser("train", help="train PPO (the main job)",
                                   description=_train_description())
    training.add_argument("--config", help=CONFIG_HELP + "; quick is a one-minute run")
    training.add_argument("--resume", help="continue a run from its latest.pt")
    training.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "eval", help="play policies on the same seeds and print the benchmark table",
        description="Play each policy on the same --episodes starting worlds and world "
                    "randomness (the grids of one env seeded --seed) and print the benchmark "
                    "table; wins are counted pair by pair against the first policy.")
    evaluate.add_argument("policies", nargs="+", metavar="POLICY",
                          help=POLICY_HELP + "; wins are counted against the first one")
    evaluate.add_argument("--episodes", type=positive_int, default=50,
                          help="episodes per policy, played in one batch (>= 1)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of the episodes (the same for every policy)")
    evaluate.add_argument("--json", help="also write the numbers and the config to this file")
    evaluate.add_argument("--config", help=CONFIG_HELP)
    evaluate.set_defaults(handler=cmd_eval)

    from puffer_cluster.traces.commands import add_traces_parser
    add_traces_parser(commands)
    from puffer_cluster.validate import add_validate_parser
    add_validate_parser(commands)
    from puffer_cluster.simkube_run import add_simkube_parser
    add_simkube_parser(commands)
    from puffer_cluster import record
    record.add_parser(commands)
    from puffer_cluster import diagnose
    diagnose.add_parser(commands)
    from puffer_cluster import status
    status.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if hasattr(args, "handler"):
            return args.handler(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args.func(args)
    except (ConfigError, PolicyError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
