"""What every command shares: the parser class, argument types and help texts, and `CLIError`,
the one error a command ends with (the domain errors it lets through are mapped to it in
`as_cli_error`)."""
from __future__ import annotations

import argparse

from puffer_cluster.config import ConfigError, shipped_configs
from puffer_cluster.policies import PolicyError, shipped_checkpoints
from puffer_cluster.simkube.errors import SimkubeRunError
from puffer_cluster.trainers.checkpoint import CheckpointError

CONFIG_HELP = ("a config overriding configs/gardener.ini: a shipped one by name ("
               + ", ".join(shipped_configs()) + ") or a path")
POLICY_HELP = ("'random', 'heuristic', a shipped checkpoint by name ("
               + ", ".join(shipped_checkpoints()) + ") or a checkpoint path")


class CLIError(Exception):
    """Ends a command: `error: <message>` in one line on stderr, and `exit_code` as its status
    (1: a file cannot be read or written, 2: bad input; `simkube run` has more)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def as_cli_error(error: Exception) -> CLIError | None:
    """The domain errors commands let through, as the CLI reports them; None for any other."""
    if isinstance(error, CLIError):
        return error
    if isinstance(error, SimkubeRunError):
        return CLIError(str(error), error.exit_code)
    if isinstance(error, (ConfigError, PolicyError, CheckpointError)):
        return CLIError(str(error))
    return None


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


def add_kubeconfig_arguments(parser) -> None:
    """--kubeconfig and --context: the cluster a command talks to."""
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: its current context)")


def add_paired_policy_arguments(parser, episodes: int, episodes_help: str, json_help: str) -> None:
    """POLICY... --episodes --seed --json: policies played on the same seeds, wins counted
    against the first one."""
    parser.add_argument("policies", nargs="+", metavar="POLICY",
                        help=POLICY_HELP + "; wins are counted against the first one")
    parser.add_argument("--episodes", type=positive_int, default=episodes, help=episodes_help)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the episodes (the same for every policy)")
    parser.add_argument("--json", help=json_help)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value
