"""`puffer-cluster status`: versions, CUDA, models, config and kubeconfig context
(`puffer_cluster.status`). No API call unless `--check`.

Exit status: 0; with --check, 3 no usable kubeconfig, 4 API unreachable."""
from __future__ import annotations

from pathlib import Path

from puffer_cluster.cli.common import add_kubeconfig_arguments
from puffer_cluster.config import load_config


def add_parser(commands):
    parser = commands.add_parser(
        "status", help="versions, CUDA, models, config and kubeconfig context",
        description="Show the Python, torch, numba and pufferlib versions, CUDA and its devices, "
                    "the checkpoints shipped and found under --runs, the config in use and the "
                    "kubeconfig's current context. No API call unless --check.")
    parser.add_argument("--config", help="the config to show (default: configs/gardener.ini)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where to look for trained runs")
    add_kubeconfig_arguments(parser)
    parser.add_argument("--check", action="store_true", help="also ask the API server its version")
    return parser


def run(args, overrides: list[str]) -> int:
    from puffer_cluster.status import api_version, status_lines
    config = load_config(args.config, overrides)
    lines, kubeconfig = status_lines(config, args.config, args.runs, args.kubeconfig, args.context)
    print("\n".join(lines))
    if args.check:
        print(api_version(kubeconfig, args.context))
    return 0
