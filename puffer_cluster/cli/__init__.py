"""`puffer-cluster`: the command line. A module per command, each with `add_parser(commands)`
(returns its parser) and `run(args, overrides) -> int`; config keys are overridden
PufferLib-style with `--section.key value` after the command's own options."""
from __future__ import annotations

import sys
import warnings

from puffer_cluster import __version__
from puffer_cluster.cli import diagnose, evaluate, record, simkube, status, traces, train, validate
from puffer_cluster.cli.common import (
    CONFIG_HELP, POLICY_HELP, ArgumentParser, CLIError, as_cli_error, positive_int,
)

__all__ = ["CONFIG_HELP", "COMMANDS", "POLICY_HELP", "ArgumentParser", "CLIError", "build_parser",
           "main", "positive_int"]

# torch.cuda imports pynvml, which warns about its own deprecation: noise for our users.
warnings.filterwarnings("ignore", message="The pynvml package is deprecated", category=FutureWarning)

# The commands, in the order `puffer-cluster --help` lists them.
COMMANDS = (train, evaluate, traces, validate, simkube, diagnose, status, record)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="puffer-cluster",
        description="Autonomous Kubernetes cluster maintenance as a fast RL environment.",
        epilog="Any config key can follow a command's options as --section.key value "
               "(e.g. --env.height 32 --train.total-timesteps 5e6). "
               "`puffer-cluster COMMAND --help` tells more.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands).set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if overrides and not getattr(args, "takes_overrides", True):
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    try:
        return args.run(args, overrides)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        failure = as_cli_error(error)
        if failure is None:
            raise
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code
