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

import sys

import numpy as np

from puffer_cluster.kernels import cluster_ops as kernel
from puffer_cluster.cluster_ops.env import ClusterOpsGymEnv
from puffer_cluster.cluster_ops.live import (
    ClusterReader, LiveView, apply_plan, findings, gardener_recommendations, plan_write,
    read_cluster, read_for_action,
)
from puffer_cluster.registry import policy_factory
from puffer_cluster.simkube.client import api_client_from_kubeconfig, find_kubeconfig
from puffer_cluster.simkube.errors import KubeconfigError

EXIT_FORBIDDEN = 5


def diagnose_simulated(params, policy, steps: int, seed: int) -> dict:
    """Play the policy on one simulated cluster (seeded) and tell what it found and did."""
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
    gardener_make = policy_factory(args.gardener, config, args.seed, env_name="gardener")
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
