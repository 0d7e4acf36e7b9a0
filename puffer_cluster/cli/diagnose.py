"""`puffer-cluster diagnose`: a ClusterOps policy diagnoses a simulated or a live cluster
(`puffer_cluster.diagnose`)."""
from __future__ import annotations

import json
from pathlib import Path

from puffer_cluster.cli.common import CLIError, add_kubeconfig_arguments, positive_int
from puffer_cluster.config import load_config
from puffer_cluster.policies import shipped_checkpoints

DEFAULT_MODEL = "cluster_ops_ppo"  # the shipped checkpoint, else the runbook


def add_parser(commands):
    parser = commands.add_parser(
        "diagnose", help="a ClusterOps policy diagnoses a simulated or a live cluster",
        description="Run a ClusterOps policy on a simulated cluster with an incident (default) or, "
                    "with --live, on the cluster of a kubeconfig: read actions are executed (GET/LIST "
                    "only), write actions are printed as the kubectl command each would run. Nothing "
                    "is written without --apply. Config keys follow as --section.key value.",
        epilog="Exit status: 0 done, 2 bad arguments or config, 3 no usable kubeconfig, 4 API "
               "unreachable, 5 done but some reads were refused (RBAC), 6 a write was refused.")
    parser.add_argument("--model", default=None,
                        help="'heuristic', 'random' or a ClusterOps checkpoint (default: the shipped "
                             f"{DEFAULT_MODEL} if installed, else heuristic)")
    parser.add_argument("--steps", type=positive_int, default=20, help="policy steps")
    parser.add_argument("--seed", type=int, default=0, help="the simulated cluster's seed")
    parser.add_argument("--live", "--no-simulation", dest="live", action="store_true",
                        help="diagnose the cluster of the kubeconfig instead of a simulated one")
    add_kubeconfig_arguments(parser)
    parser.add_argument("--apply", action="store_true",
                        help="with --live: run the planned writes, each confirmed interactively")
    parser.add_argument("--yes", action="store_true", help="with --apply: confirm every write at once")
    parser.add_argument("--gardener", default="heuristic",
                        help="with --live: the gardener policy for CLEAN / SCALE recommendations")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON")
    parser.add_argument("--config", help="a config overriding configs/gardener.ini (e.g. cluster_ops)")
    return parser


def run(args, overrides: list[str]) -> int:
    from puffer_cluster.cluster_ops import cluster_ops_params
    from puffer_cluster.diagnose import diagnose_live, diagnose_simulated
    from puffer_cluster.registry import policy_factory
    config = load_config(args.config, overrides)
    if (args.apply or args.yes) and not args.live:
        raise CLIError("--apply and --yes act on a live cluster: add --live")
    if args.yes and not args.apply:
        raise CLIError("--yes confirms the writes of --apply: add --apply")
    model = args.model or (DEFAULT_MODEL if DEFAULT_MODEL in shipped_checkpoints() else "heuristic")
    params = cluster_ops_params(config.get("cluster_ops"))
    policy = policy_factory(model, config, args.seed, env_name="cluster_ops")(1, params)
    if args.live:
        report, code = diagnose_live(args, config, params, policy)
    else:
        report, code = diagnose_simulated(params, policy, args.steps, args.seed), 0
    report["model"] = model
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return code
