"""The envs the trainer, eval, validate, record and bench can run, one spec each (as PufferLib's
`env_creator` and gymnax's registration do), looked up by `[base] env_name`.

Adding an env costs its own files (the env, its baselines' rules, its table) and one entry in
`ENV_SPECS`; no other code names an env.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import puffer_cluster.kernels.cluster_ops as cluster_ops_kernel
import puffer_cluster.kernels.simarena as simarena_kernel
import puffer_cluster.kernels.world as world
from puffer_cluster import GYM_ID as GARDENER_GYM_ID
from puffer_cluster import REPLAY_GYM_ID, cluster_ops, simarena
from puffer_cluster.config import ConfigError, world_config
from puffer_cluster.env import GardenerEnv, GardenerGymEnv, make_gardener_vecenv, world_params
from puffer_cluster.policies import (
    CheckpointPolicy, ConstantPolicy, HeuristicPolicy, PolicyError, RandomPolicy, RulePolicy,
    checkpoint_path, shipped_checkpoints,
)
from puffer_cluster.replay import TraceReplayGymEnv, mixed
from puffer_cluster.tables import format_gardener_table, statistics_row, summarize

# A baseline: (num_agents, env params, config, seed) -> policy(observations, episode_start).
Baseline = Callable[[int, Any, dict, int], Callable]


def seeded(policy_class) -> Baseline:
    """A baseline from a class built as `policy_class(num_agents, seed)`."""
    return lambda num_agents, params, config, seed: policy_class(num_agents, seed)


def constant(action: int) -> Baseline:
    return lambda num_agents, params, config, seed: ConstantPolicy(num_agents, action)


@dataclass(frozen=True)
class EnvSpec:
    """One env, as the trainer, eval, validate, record and bench use it. Its baselines include
    `heuristic`: the reference line of the trainer's held-out curve. The fields with defaults
    fit an env of one agent per env whose table shows every statistic's mean."""
    name: str
    # The trainer's env from a whole config ([vec] too), as (config, rank=0, world_size=1):
    # process `rank`'s share of the run's `[env] num_envs` (`env.grid_share`).
    make_vecenv: Callable[..., Any]
    # (config, episodes, seed, heldout) -> a native env whose first episodes make a table, or
    # (heldout) the trainer's held-out evaluation; the same envs for every policy.
    episode_env: Callable[[dict, int, int, bool], Any]
    obs_size: int                             # what the actor reads
    num_actions: int
    action_names: tuple[str, ...]
    baselines: Mapping[str, Baseline]         # the policies a name plays, besides checkpoints
    episode_stats: tuple[str, ...]            # rows of the env's `last_stats`
    format_table: Callable[[list[dict]], str]
    gym_id: str
    gym_env: type                             # the one-env Gymnasium class (`record` renders it)
    # (name, stats, baseline stats, env) -> table row; None: `tables.statistics_row`.
    summarize: Callable | None = None
    check_config: Callable[[dict], Any] = lambda config: None  # ConfigError for its sections
    agents_per_env: Callable[[dict], int] = lambda config: 1   # per env of `[env] num_envs`
    # learning_curve.png's second curve: (scalar, label).
    curve_statistic: tuple[str, str] = ("environment/episode_length", "episode length")
    teacher: str | None = None                # the baseline that can kickstart training
    privileged_critic: bool = False           # offers `[policy] critic = privileged` features

    @property
    def return_column(self) -> int:
        return self.episode_stats.index("episode_return")

    def table_row(self, name: str, stats, baseline, env) -> dict:
        if self.summarize is not None:
            return self.summarize(name, stats, baseline, env)
        return statistics_row(self.name, self.episode_stats, name, stats, baseline)


def _gardener_episode_env(config: dict, episodes: int, seed: int, heldout: bool = False):
    """Grids 0 .. episodes-1 of a `GardenerEnv` seeded `seed` (held out: seeded `eval_seed`)."""
    return GardenerEnv(num_envs=episodes, seed=seed, log_interval=2**62, **world_config(config))


GARDENER_BASELINES = {
    "random": seeded(RandomPolicy),
    "heuristic": lambda num_agents, params, config, seed: HeuristicPolicy(
        num_agents, params, config["heuristic"]),
}

GARDENER = EnvSpec(
    name="gardener", make_vecenv=make_gardener_vecenv, episode_env=_gardener_episode_env,
    obs_size=world.OBS_SIZE, num_actions=world.NUM_ACTIONS, action_names=world.ACTION_NAMES,
    baselines=GARDENER_BASELINES,
    episode_stats=world.EPISODE_STATS, summarize=summarize, format_table=format_gardener_table,
    gym_id=GARDENER_GYM_ID, gym_env=GardenerGymEnv,
    check_config=lambda config: world_params(world_config(config)),
    agents_per_env=lambda config: config["env"]["agents_per_grid"],
    curve_statistic=("environment/oom_rate", "OOM per 100 steps"),
    teacher="heuristic", privileged_critic=True)

# Trains on a mix of replayed traces and gardener worlds; evaluates on replays only (the eval
# table on the training traces, the held-out curve on traces generated from eval_seed).
REPLAY = EnvSpec(
    name="replay", make_vecenv=mixed.make_replay_vecenv, episode_env=mixed.episode_env,
    obs_size=world.OBS_SIZE, num_actions=world.NUM_ACTIONS, action_names=world.ACTION_NAMES,
    baselines=GARDENER_BASELINES,
    episode_stats=world.EPISODE_STATS, summarize=summarize, format_table=format_gardener_table,
    gym_id=REPLAY_GYM_ID, gym_env=TraceReplayGymEnv, check_config=mixed.check_replay_config,
    agents_per_env=lambda config: config["env"]["agents_per_grid"],
    curve_statistic=("environment/oom_rate", "OOM per 100 steps"), teacher="heuristic",
    privileged_critic=True)

SIMARENA = EnvSpec(
    name="simarena", make_vecenv=simarena.make_simarena_vecenv, episode_env=simarena.episode_env,
    obs_size=simarena_kernel.OBS_SIZE, num_actions=simarena_kernel.NUM_ACTIONS,
    action_names=simarena_kernel.ACTION_NAMES,
    baselines={
        "random": lambda num_agents, params, config, seed: RandomPolicy(
            num_agents, seed, draw=simarena.random_actions),
        "heuristic": lambda num_agents, params, config, seed: RulePolicy(
            num_agents, simarena.heuristic_actions),
        **{name: constant(action) for action, name in enumerate(simarena_kernel.ACTION_NAMES)},
        **{alias: constant(simarena_kernel.ACTION_NAMES.index(name))
           for alias, name in simarena.POLICY_ALIASES.items()},
    },
    episode_stats=simarena_kernel.EPISODE_STATS, summarize=simarena.summarize_simarena,
    format_table=simarena.format_simarena_table, gym_id=simarena.GYM_ID,
    gym_env=simarena.SimArenaGymEnv,
    check_config=simarena.simarena_settings, curve_statistic=("environment/solved", "solved fraction"))

CLUSTER_OPS = EnvSpec(
    name="cluster_ops", make_vecenv=cluster_ops.make_cluster_ops_vecenv,
    episode_env=cluster_ops.episode_env, obs_size=cluster_ops_kernel.OBS_SIZE,
    num_actions=cluster_ops_kernel.NUM_ACTIONS, action_names=cluster_ops_kernel.ACTION_NAMES,
    baselines={
        "random": lambda num_agents, params, config, seed: RandomPolicy(
            num_agents, seed, draw=cluster_ops.random_actions),
        "heuristic": lambda num_agents, params, config, seed: RulePolicy(
            num_agents, cluster_ops.heuristic_actions),
    },
    episode_stats=cluster_ops_kernel.EPISODE_STATS, format_table=cluster_ops.format_table,
    gym_id=cluster_ops.GYM_ID, gym_env=cluster_ops.ClusterOpsGymEnv,
    check_config=lambda config: cluster_ops.cluster_ops_params(config.get("cluster_ops")),
    curve_statistic=("environment/resolved", "incidents resolved"))

ENV_SPECS: dict[str, EnvSpec] = {spec.name: spec for spec in (GARDENER, SIMARENA, CLUSTER_OPS,
                                                                REPLAY)}
DEFAULT_ENV = GARDENER.name  # a table row without an "env" key is the gardener's


def get_env_spec(name: str) -> EnvSpec:
    """The spec of `[base] env_name`; an unknown name is a ConfigError listing the known ones."""
    if name not in ENV_SPECS:
        raise ConfigError(f"base.env_name must be one of {', '.join(ENV_SPECS)}, got {name!r}")
    return ENV_SPECS[name]


def policy_factory(name: str, config: dict, seed: int = 0, env_name: str | None = None):
    """A `make_policy(num_agents, params)` for the config's env (or `env_name`'s): one of its
    baselines by name, a shipped checkpoint's name or a checkpoint path."""
    spec = get_env_spec(env_name or config["base"]["env_name"])
    if name in spec.baselines:
        baseline = spec.baselines[name]
        return lambda num_agents, params: baseline(num_agents, params, config, seed)
    path = checkpoint_path(name)
    if path is not None:
        return lambda num_agents, params: CheckpointPolicy(
            str(path), num_agents, config, seed, spec.obs_size, spec.num_actions, spec.name)
    raise PolicyError(f"unknown policy {name!r} for the {spec.name} env: use one of "
                      f"{', '.join(spec.baselines)}, a shipped checkpoint "
                      f"({', '.join(shipped_checkpoints())}) or a checkpoint path")
