"""The benchmark table: several policies played on the same seeds, compared pair by pair, on
the env of `[base] env_name` (its spec in `puffer_cluster.registry`)."""
from __future__ import annotations

import numpy as np

from puffer_cluster.env import GardenerEnv
from puffer_cluster.registry import DEFAULT_ENV, get_env_spec, policy_factory


def play_episodes(make_policy, episodes: int, seed: int, env_config: dict) -> np.ndarray:
    """Statistics (episodes, NUM_STATS) of the first episode of grids 0 .. episodes-1 of a
    `GardenerEnv` seeded `seed`: the same starting worlds and world randomness for every policy."""
    env = GardenerEnv(num_envs=episodes, seed=seed, log_interval=2**62, **env_config)
    return play_first_episodes(env, make_policy)


def play_first_episodes(env, make_policy) -> np.ndarray:
    """Statistics (envs, NUM_STATS) of the first episode of every env (grid) of a batched env,
    played by the policy `make_policy(num_agents, env.params)`."""
    policy = make_policy(env.num_agents, env.params)
    observations, _ = env.reset()
    grids = env.state.last_stats.shape[0]
    agents = env.num_agents // grids
    stats = np.zeros(env.state.last_stats.shape)
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


def heldout_return(config: dict, make_policy) -> float:
    """Mean return of `make_policy`'s policy on the trainer's held-out episodes: the first
    episodes of `[train] eval_episodes` envs seeded `eval_seed`, never the benchmark's."""
    spec = get_env_spec(config["base"]["env_name"])
    env = spec.episode_env(config, config["train"]["eval_episodes"], config["train"]["eval_seed"],
                           True)
    return float(play_first_episodes(env, make_policy)[:, spec.return_column].mean())


def format_table(rows: list[dict]) -> str:
    """The table of the env the rows were played on."""
    return get_env_spec(rows[0].get("env", DEFAULT_ENV)).format_table(rows)


def evaluate(policy_names: list[str], episodes: int, seed: int, config: dict) -> list[dict]:
    """Rows of the table, one per policy, wins counted against the first policy."""
    spec = get_env_spec(config["base"]["env_name"])
    makers = [policy_factory(name, config, seed) for name in policy_names]  # a typo fails first
    rows, baseline = [], None
    for name, make in zip(policy_names, makers):
        env = spec.episode_env(config, episodes, seed, False)
        stats = play_first_episodes(env, make)
        rows.append(spec.table_row(name, stats, baseline, env))
        baseline = stats if baseline is None else baseline
    return rows
