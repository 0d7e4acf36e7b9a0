"""ClusterOps' baseline policies (random, the runbook heuristic), checkpoints, and the benchmark
table: policies played on the same seeds, compared pair by pair."""
from __future__ import annotations

import numpy as np

from kernels import cluster_ops as kernel
from kernels.rng import counter_hash
from puffer_cluster.config import ConfigError
from puffer_cluster.policies import ModelPolicy, PolicyError, checkpoint_path

STREAM_ACTION = np.uint64(0xC0D5)
# A share of pods this small counts as none (the observation is float32).
EPSILON = 1e-4


def random_actions(seed: int, step: int, out: np.ndarray) -> np.ndarray:
    """Uniform actions in [0, 15), a pure function of (seed, step, agent)."""
    n = out.shape[0]
    hashed = counter_hash(np.full(n, np.uint64(seed % 2**64)), np.full(n, np.uint64(step)),
                          np.arange(n, dtype=np.uint64), np.full(n, STREAM_ACTION))
    out[:] = (hashed % np.uint64(kernel.NUM_ACTIONS)).astype(np.int32)
    return out


def heuristic_actions(observations: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The runbook, written from the seed's semantics: look, then fix what the look revealed.

    First the fixes the observation justifies: a NotReady node -> DRAIN_NODE; a revealed
    resource pressure -> DRAIN_NODE, bad rollout -> SCALE_DOWN_DEPLOYMENT, crash loop or network
    fault -> RESTART_FAILED_PODS, cordoned node -> UNCORDON_NODE; replicas missing ->
    SCALE_UP_DEPLOYMENT. Otherwise, while pods are hurt: DESCRIBE_UNHEALTHY when no cause is
    known yet, then CHECK_LOGS, GET_EVENTS, GET_DEPLOYMENTS, GET_NODES for the causes still
    unknown. Nothing hurt, or only a revealed pending PVC (it binds by itself): WAIT."""
    obs = np.asarray(observations)
    flags = obs[:, kernel.OBS_FLAGS:kernel.OBS_FLAGS + kernel.NUM_FLAGS]
    known = flags > 0.5
    unknown = flags < -0.5
    accounted = (obs[:, kernel.OBS_RUNNING] + obs[:, kernel.OBS_PENDING] + obs[:, kernel.OBS_FAILED]
                 + obs[:, kernel.OBS_UNKNOWN])
    missing = accounted < 1.0 - EPSILON
    hurt = ((obs[:, kernel.OBS_PENDING] > EPSILON) | (obs[:, kernel.OBS_FAILED] > EPSILON)
            | (obs[:, kernel.OBS_UNKNOWN] > EPSILON) | missing
            | (obs[:, kernel.OBS_HEALTHY_DEPLOYMENTS] < 1.0 - EPSILON))
    actions = np.select(
        [obs[:, kernel.OBS_NOT_READY] > 0, known[:, kernel.FLAG_PRESSURE],
         known[:, kernel.FLAG_BAD_ROLLOUT],
         known[:, kernel.FLAG_CRASH_LOOP] | known[:, kernel.FLAG_NETWORK],
         known[:, kernel.FLAG_CORDONED], missing,
         hurt & unknown.all(axis=1),
         hurt & (unknown[:, kernel.FLAG_CRASH_LOOP] | unknown[:, kernel.FLAG_NETWORK]),
         hurt & (unknown[:, kernel.FLAG_PVC] | unknown[:, kernel.FLAG_PRESSURE]),
         hurt & unknown[:, kernel.FLAG_BAD_ROLLOUT],
         hurt & unknown[:, kernel.FLAG_CORDONED]],
        [kernel.DRAIN_NODE, kernel.DRAIN_NODE, kernel.SCALE_DOWN_DEPLOYMENT,
         kernel.RESTART_FAILED_PODS, kernel.UNCORDON_NODE, kernel.SCALE_UP_DEPLOYMENT,
         kernel.DESCRIBE_UNHEALTHY, kernel.CHECK_LOGS, kernel.GET_EVENTS, kernel.GET_DEPLOYMENTS,
         kernel.GET_NODES],
        kernel.WAIT).astype(np.int32)
    if out is None:
        return actions
    out[:] = actions
    return out


class RandomPolicy:
    """Uniform random actions, reproducible from (seed, step, agent)."""

    def __init__(self, num_agents: int, seed: int = 0):
        self.seed, self.step = seed, 0
        self.actions = np.zeros(num_agents, dtype=np.int32)

    def __call__(self, observations, episode_start):
        random_actions(self.seed, self.step, self.actions)
        self.step += 1
        return self.actions


class HeuristicPolicy:
    """The runbook of `heuristic_actions`."""

    def __init__(self, num_agents: int, seed: int = 0):
        self.actions = np.zeros(num_agents, dtype=np.int32)

    def __call__(self, observations, episode_start):
        return heuristic_actions(observations, self.actions)


POLICIES = {"random": RandomPolicy, "heuristic": HeuristicPolicy}


def load_checkpoint_policy(path: str, num_agents: int, greedy: bool = True, seed: int = 0):
    """A checkpoint trained on ClusterOps, as a policy."""
    from trainers.checkpoint import load_checkpoint
    from trainers.models import make_policy
    checkpoint = load_checkpoint(path)
    trained_on = checkpoint["config"].get("base", {}).get("env_name")
    if trained_on != "cluster_ops":
        raise ConfigError(f"{path} was trained on {trained_on!r}, not on ClusterOps")
    model = make_policy(checkpoint["config"]["policy"], kernel.OBS_SIZE, kernel.NUM_ACTIONS)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return ModelPolicy(model, num_agents, greedy, seed, name=str(path))


def make_policy(spec: str, num_agents: int, config: dict | None = None, seed: int = 0):
    """A policy `(observations, episode_start) -> actions` for 'random', 'heuristic' or a
    checkpoint trained on ClusterOps (a path or a shipped checkpoint's name)."""
    if spec in POLICIES:
        return POLICIES[spec](num_agents, seed)
    path = checkpoint_path(spec)
    if path is not None:
        greedy = bool((config or {}).get("eval", {}).get("greedy", True))
        return load_checkpoint_policy(str(path), num_agents, greedy, seed)
    raise PolicyError(f"unknown ClusterOps policy {spec!r}: use random, heuristic or a "
                      "checkpoint trained on ClusterOps")


def play_episodes(spec: str, episodes: int, seed: int, config: dict) -> np.ndarray:
    """Statistics (episodes, NUM_STATS) of the first episode of envs 0 .. episodes-1 of a
    `ClusterOpsEnv` seeded `seed`: the same incidents for every policy that acts alike."""
    from puffer_cluster.cluster_ops.env import ClusterOpsEnv
    env = ClusterOpsEnv(num_envs=episodes, seed=seed, log_interval=2**62,
                        cluster_ops=config.get("cluster_ops"))
    policy = make_policy(spec, episodes, config, seed)
    observations, _ = env.reset()
    episode_start = np.ones(episodes, dtype=bool)
    for _ in range(env.params.max_steps):
        observations, _, _, truncations, _ = env.step(policy(observations, episode_start))
        episode_start[:] = False
    assert truncations.all()  # every episode lasts max_steps steps
    return env.state.last_stats.copy()


def evaluate(policy_specs: list[str], episodes: int, seed: int, config: dict) -> list[dict]:
    """The eval table's rows for ClusterOps, wins counted against the first policy."""
    rows, baseline = [], None
    for spec in policy_specs:
        stats = play_episodes(spec, episodes, seed, config)
        row = {"env": "cluster_ops", "name": spec, "episodes": episodes,
               "reward_mean": float(stats[:, kernel.STAT_RETURN].mean()),
               "reward_std": float(stats[:, kernel.STAT_RETURN].std()),
               **{f"{stat}_mean": float(stats[:, k].mean())
                  for k, stat in enumerate(kernel.EPISODE_STATS) if stat != "episode_return"}}
        if baseline is not None:
            ours, theirs = stats[:, kernel.STAT_RETURN], baseline[:, kernel.STAT_RETURN]
            row["wins"] = int((ours > theirs).sum())
            row["ties"] = int((ours == theirs).sum())
        rows.append(row)
        baseline = stats if baseline is None else baseline
    return rows


def format_table(rows: list[dict]) -> str:
    """The ClusterOps benchmark table, in the format of the gardener's."""
    from puffer_cluster.evaluate import win_rate_lines
    width = max(len(row["name"]) for row in rows)
    rule = "=" * 78
    lines = [rule, f"CLUSTEROPS RESULTS ({' vs '.join(row['name'] for row in rows)})", rule]
    for row in rows:
        lines.append(
            f"{row['name']:<{width}} | reward mu={row['reward_mean']:+.3f} sigma={row['reward_std']:.3f}"
            f" | resolved mu={row['resolved_mean']:.2f} | wrong fixes mu={row['wrong_fixes_mean']:.2f}"
            f" | healthy={row['healthy_fraction_mean']:.2f} | open={row['open_incidents_mean']:.2f}")
    lines.append("-" * 78)
    lines.extend(win_rate_lines(rows, tuple(POLICIES)))
    lines.append(rule)
    return "\n".join(lines)
