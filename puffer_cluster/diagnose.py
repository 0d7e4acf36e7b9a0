"""`puffer-cluster diagnose`: a ClusterOps policy diagnoses a cluster (seed: `rl diagnose`).

Default: a simulated cluster with an incident; the policy's steps, what it found and what it did.
`--live` (alias `--no-simulation`): the cluster of the kubeconfig. Read actions run for real
(GET / LIST only); write actions become a plan, the exact `kubectl` command for each, on the
object the simulation's rule picks. The report names the unhealthy nodes, pods and Deployments
with their evidence, and the gardener's CLEAN / SCALE recommendations on the live nodes.
Nothing is written unless `--apply`, and then each write is confirmed (all at once: `--yes`).

Exit status: 0 done; 2 bad arguments or config; 3 no usable kubeconfig; 4 API unreachable;
5 done, but some reads were refused (RBAC: listed per resource); 6 the API refused a write.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from kernels import cluster_ops as kernel
from puffer_cluster.config import ConfigError, load_config

EXIT_FORBIDDEN = 5
DEFAULT_MODEL = "cluster_ops_ppo"  # the shipped checkpoint, else the runbook


def add_parser(commands) -> argparse.ArgumentParser:
    from puffer_cluster.cli import positive_int
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
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: its current context)")
    parser.add_argument("--apply", action="store_true",
                        help="with --live: run the planned writes, each confirmed interactively")
    parser.add_argument("--yes", action="store_true", help="with --apply: confirm every write at once")
    parser.add_argument("--gardener", default="heuristic",
                        help="with --live: the gardener policy for CLEAN / SCALE recommendations")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON")
    parser.add_argument("--config", help="a config overriding configs/gardener.ini (e.g. cluster_ops)")
    parser.set_defaults(handler=run)
    return parser


def _model_spec(spec: str | None) -> str:
    if spec is not None:
        return spec
    from puffer_cluster.policies import shipped_checkpoints
    return DEFAULT_MODEL if DEFAULT_MODEL in shipped_checkpoints() else "heuristic"


def run(args, overrides: list[str]) -> int:
    config = load_config(args.config, overrides)
    if (args.apply or args.yes) and not args.live:
        raise ConfigError("--apply and --yes act on a live cluster: add --live")
    if args.yes and not args.apply:
        raise ConfigError("--yes confirms the writes of --apply: add --apply")
    from puffer_cluster.cluster_ops import cluster_ops_params, make_policy
    params = cluster_ops_params(config.get("cluster_ops"))
    policy = make_policy(_model_spec(args.model), 1, config, args.seed)
    if not args.live:
        report, code = diagnose_simulated(params, policy, args.steps, args.seed), 0
    else:
        from puffer_cluster.simkube_run import SimkubeRunError
        try:
            report, code = diagnose_live(args, config, params, policy)
        except SimkubeRunError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
    report["model"] = _model_spec(args.model)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return code


def diagnose_simulated(params, policy, steps: int, seed: int) -> dict:
    """Play the policy on one simulated cluster (seeded) and tell what it found and did."""
    from puffer_cluster.cluster_ops.env import ClusterOpsGymEnv
    env = ClusterOpsGymEnv(render_mode="ansi", cluster_ops=params._asdict())
    obs, _ = env.reset(seed=seed)
    print("simulated cluster at the start:\n" + env.render() + "\n")
    episode_start = np.ones(1, dtype=bool)
    lines, revealed = [], set()
    for t in range(min(steps, params.max_steps)):
        action = int(policy(obs[None], episode_start)[0])
        episode_start[0] = False
        before = env.state.ep_resolved[0], env.state.ep_wrong[0]
        obs, reward, _, truncated, _ = env.step(action)
        outcome = "resolved an incident" if env.state.ep_resolved[0] > before[0] else \
            "wrong fix" if env.state.ep_wrong[0] > before[1] else ""
        line = f"step {t + 1:>3}  {kernel.ACTION_NAMES[action]:<22} reward {reward:+.2f}  {outcome}"
        print(line)
        lines.append({"step": t + 1, "action": kernel.ACTION_NAMES[action], "reward": reward,
                      "outcome": outcome})
        revealed.update(f for f in range(kernel.NUM_FLAGS) if obs[kernel.OBS_FLAGS + f] > 0.5)
        if truncated:
            break
    found = [kernel.FLAG_NAMES[f] for f in sorted(revealed)]
    state = env.state
    summary = {"resolved": int(state.ep_resolved[0]), "wrong_fixes": int(state.ep_wrong[0]),
               "reads": int(state.ep_reads[0]), "incidents": int(state.ep_incidents[0]),
               "open_incidents": int(kernel._open_incidents(env.params, state, 0)),
               "return": float(state.ep_return[0])}
    print(f"\nfound (causes revealed): {', '.join(found) or 'none'}")
    print(f"did: {summary['resolved']} incidents resolved, {summary['wrong_fixes']} wrong fixes, "
          f"{summary['reads']} reads; {summary['open_incidents']} incidents open; "
          f"return {summary['return']:+.2f}")
    print("simulated cluster at the end:\n" + env.render())
    return {"mode": "simulated", "seed": seed, "steps": lines, "found": found, **summary}


def _confirm(plan, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    try:
        answer = input(f"run `{plan.command}`? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def diagnose_live(args, config: dict, params, policy) -> tuple[dict, int]:
    """Observe the kubeconfig's cluster, run the policy on it (reads for real, writes as plans),
    report; returns (report, exit status)."""
    from puffer_cluster.cluster_ops.live import (
        ClusterReader, LiveView, apply_plan, findings, gardener_recommendations, plan_write,
        read_cluster, read_for_action,
    )
    from puffer_cluster.policies import policy_factory
    from puffer_cluster.simkube_run import KubeconfigError, api_client_from_kubeconfig, find_kubeconfig
    kubeconfig = find_kubeconfig(args.kubeconfig)
    if kubeconfig is None:
        raise KubeconfigError("--live needs a kubeconfig: none given, $KUBECONFIG unset and no "
                              "~/.kube/config")
    api = api_client_from_kubeconfig(kubeconfig, args.context)
    reader = ClusterReader(api)
    version = reader.check_reachable()
    print(f"cluster {api.configuration.host} (Kubernetes {version}); "
          + ("writes need confirmation" if args.apply else "read-only: writes are only planned"))
    view = LiveView(read_cluster(reader))
    steps, plans = [], []
    episode_start = np.ones(1, dtype=bool)
    for t in range(args.steps):
        obs = view.observation(params)
        action = int(policy(obs[None], episode_start)[0])
        episode_start[0] = False
        name = kernel.ACTION_NAMES[action]
        if action in kernel.WRITE_ACTIONS:
            plan = plan_write(view, action)
            if plan is None:
                detail = "no object of its kind: nothing to do"
            else:
                applied = False
                if args.apply and _confirm(plan, args.yes):
                    apply_plan(api, plan)
                    applied = True
                detail = f"{'applied' if applied else 'plan'}: {plan.command}" + \
                    (" (no object of the right cause: this would be a wrong fix)" if plan.wrong else "")
                plans.append({**plan.as_dict(), "applied": applied, "step": t + 1})
                view.handled.update(plan.handles)
        elif action == kernel.WAIT:
            detail = "wait"
        else:
            detail = read_for_action(reader, view, action)
        print(f"step {t + 1:>3}  {name:<22} {detail}")
        steps.append({"step": t + 1, "action": name, "detail": detail})
    found = findings(view.snapshot)
    print("\nunhealthy objects:" if found else "\nno unhealthy object found")
    for f in found:
        cause = f" [{kernel.FLAG_NAMES[f.cause]}]" if f.cause >= 0 else ""
        print(f"  {f.kind} {f.ref}{cause}: {'; '.join(f.evidence)}")
    if plans:
        print("plan:" if not args.apply else "writes:")
        for plan in plans:
            print(f"  {'applied ' if plan['applied'] else ''}{plan['command']}")
    gardener_make = policy_factory(args.gardener, config, args.seed)
    grid, recommendations = gardener_recommendations(view.snapshot, gardener_make)
    print(f"gardener ({args.gardener}) on a {grid['height']}x{grid['width']} grid of the nodes: "
          + (", ".join(f"{r['action']} {r['node']}" for r in recommendations) or "nothing to do"))
    for resource, reason in reader.forbidden.items():
        print(f"warning: could not read {resource}: {reason}", file=sys.stderr)
    report = {"mode": "live", "server": api.configuration.host, "version": version,
              "context": args.context, "steps": steps, "plan": plans,
              "findings": [f.as_dict() for f in found], "forbidden": dict(reader.forbidden),
              "reads": reader.log, "gardener": {"policy": args.gardener, "grid": grid,
                                                "recommendations": recommendations}}
    return report, EXIT_FORBIDDEN if reader.forbidden else 0
