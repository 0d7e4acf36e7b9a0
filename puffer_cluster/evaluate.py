"""The benchmark table: several policies played on the same seeds, compared pair by pair."""
from __future__ import annotations

import numpy as np

from kernels.world import EPISODE_STATS, STAT_RETURN
from puffer_cluster.config import world_config
from puffer_cluster.env import GardenerEnv
from puffer_cluster.policies import BUILTIN_POLICIES, policy_factory


def play_episodes(make_policy, episodes: int, seed: int, env_config: dict) -> np.ndarray:
    """Statistics (episodes, NUM_STATS) of the first episode of grids 0 .. episodes-1 of a
    `GardenerEnv` seeded `seed`: the same starting worlds and world randomness for every policy."""
    env = GardenerEnv(num_envs=episodes, seed=seed, log_interval=2**62, **env_config)
    return play_first_episodes(env, make_policy)


def play_first_episodes(env, make_policy) -> np.ndarray:
    """Statistics (grids, NUM_STATS) of the first episode of every grid of a batched env
    (gardener or trace replay), played by the policy `make_policy(num_agents, env.params)`."""
    policy = make_policy(env.num_agents, env.params)
    observations, _ = env.reset()
    agents = env.params.agents_per_grid
    grids = env.num_agents // agents
    stats = np.zeros((grids, len(EPISODE_STATS)))
    recorded = np.zeros(grids, dtype=bool)
    episode_start = np.ones(env.num_agents, dtype=bool)
    while not recorded.all():
        actions = policy(observations, episode_start)
        _, _, terminals, truncations, _ = env.step(actions)
        done = (terminals | truncations).reshape(grids, agents)[:, 0]
        new = done & ~recorded
        stats[new] = env.state.last_stats[new]
        recorded |= new
        episode_start = np.repeat(done, agents)
    return stats


def summarize(name: str, stats: np.ndarray, baseline: np.ndarray | None) -> dict:
    """One row of the table; wins and ties are paired comparisons of episode return."""
    column = {stat: stats[:, i] for i, stat in enumerate(EPISODE_STATS)}
    row = {
        "name": name,
        "episodes": len(stats),
        "reward_mean": float(column["episode_return"].mean()),
        "reward_std": float(column["episode_return"].std()),
        "steps_mean": float(column["episode_length"].mean()),
        "oom_rate": float(column["oom_rate"].mean()),
        "crit_rate": float(column["crit_rate"].mean()),
        "avg_load_mean": float(column["avg_load"].mean()),
        "oom_count_mean": float(column["oom_count"].mean()),
        "crit_count_mean": float(column["crit_count"].mean()),
        "collapsed_fraction": float(column["collapsed"].mean()),
    }
    if baseline is not None:
        ours, theirs = stats[:, STAT_RETURN], baseline[:, STAT_RETURN]
        row["wins"] = int((ours > theirs).sum())
        row["ties"] = int((ours == theirs).sum())
    return row


def format_table(rows: list[dict]) -> str:
    """The table in the format of the seed README (mu/sigma spelled out in ASCII)."""
    if rows and rows[0].get("env") == "simarena":  # SimArena has its own table
        from puffer_cluster.simarena import format_simarena_table
        return format_simarena_table(rows)
    if rows and rows[0].get("env") == "cluster_ops":  # so has ClusterOps
        from puffer_cluster.cluster_ops import format_table as format_cluster_ops_table
        return format_cluster_ops_table(rows)
    width = max(len(row["name"]) for row in rows)
    rule = "=" * 70
    lines = [rule, f"BENCHMARK RESULTS ({' vs '.join(row['name'] for row in rows)})", rule]
    for row in rows:
        lines.append(
            f"{row['name']:<{width}} | reward mu={row['reward_mean']:+.3f} sigma={row['reward_std']:.3f}"
            f" | steps mu={row['steps_mean']:.1f} | oom_rate={row['oom_rate']:.2f}"
            f" | crit_rate={row['crit_rate']:.2f} | avg_load mu={row['avg_load_mean']:.3f}")
    lines.append("-" * 70)
    lines.extend(win_rate_lines(rows, BUILTIN_POLICIES))
    lines.append(rule)
    return "\n".join(lines)


def win_rate_lines(rows: list[dict], builtin_names) -> list[str]:
    """'Heuristic win-rate: 50/50 (ties: 0)' for every row after the first: built-in policy
    names capitalised, checkpoint paths as given."""
    lines = []
    for row in rows[1:]:
        name = row["name"].capitalize() if row["name"] in builtin_names else row["name"]
        lines.append(f"{name} win-rate: {row['wins']}/{row['episodes']} (ties: {row['ties']})")
    return lines


def evaluate(policy_specs: list[str], episodes: int, seed: int, config: dict) -> list[dict]:
    """Rows of the table, one per policy, wins counted against the first policy."""
    if config["base"]["env_name"] == "simarena":  # SimArena has its own env and policies
        from puffer_cluster.simarena import evaluate_simarena
        return evaluate_simarena(policy_specs, episodes, seed, config)
    if config["base"]["env_name"] == "cluster_ops":  # and so has ClusterOps
        from puffer_cluster.cluster_ops import evaluate as evaluate_cluster_ops
        return evaluate_cluster_ops(policy_specs, episodes, seed, config)
    env_config = world_config(config)
    rows, baseline = [], None
    for spec in policy_specs:
        stats = play_episodes(policy_factory(spec, config, seed), episodes, seed, env_config)
        rows.append(summarize(spec, stats, baseline))
        baseline = stats if baseline is None else baseline
    return rows
