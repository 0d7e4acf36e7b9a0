"""Training on replays: `MixedVectorEnv` steps replayed-trace grids and kernel-world grids side by
side in one native PufferLib env, and the factories of the `replay` registry entry (the trainer's
env, the eval table's and the held-out episodes). The `[replay]` keys `train_*` choose the mix."""
from __future__ import annotations

from pathlib import Path

import pufferlib

from puffer_cluster.config import ConfigError, world_config
from puffer_cluster.env import (
    GardenerEnv, as_action_array, set_gardener_spaces, vectorize, world_params,
)
from puffer_cluster.replay.discovery import load_timelines
from puffer_cluster.replay.envs import TraceReplayEnv
from puffer_cluster.replay.settings import ReplaySettings, replay_settings
from puffer_cluster.traces.generate import generate_traces

BUFFERS = ("observations", "rewards", "terminals", "truncations", "masks", "actions")


class MixedVectorEnv(pufferlib.PufferEnv):
    """`num_envs` grids stepped together, auto-resetting, a native PufferLib 3.0 env: the first
    `round(train_fraction * num_envs)` replay `traces` (a `TraceReplayEnv`: grid g plays trace
    g mod their number), the others are gardener worlds (a `GardenerEnv`) on the replays' grid.
    Each part writes its slice of this env's buffers; grid g has the seeds of grid g of
    `GardenerEnv(seed=seed)`, whichever part holds it. `traces`, `replay`, `critic_features`
    and the `[env]` keys as in `TraceReplayEnv`; every `log_interval` steps the infos hold each
    part's mean episode statistics (with their episode counts `n`)."""

    def __init__(self, traces, num_envs: int, train_fraction: float, log_interval: int | None = None,
                 render_mode: str | None = "ansi", buf=None, seed: int = 0,
                 replay: dict | ReplaySettings | None = None, critic_features: bool = False,
                 **env_config):
        if num_envs < 1:
            raise ConfigError(f"num_envs = {num_envs} must be at least 1")
        if not 0.0 <= train_fraction <= 1.0:
            raise ConfigError(f"train_fraction = {train_fraction} must be in [0, 1]")
        settings, params = replay_settings(replay), world_params(env_config)
        timelines = load_timelines(traces, params, settings)
        replay_grids = int(round(train_fraction * num_envs))
        agents = params.agents_per_grid
        set_gardener_spaces(self, num_envs * agents, render_mode, critic_features)
        super().__init__(buf)
        self.seed = seed
        split = replay_grids * agents
        common = dict(log_interval=log_interval, render_mode=render_mode, seed=seed,
                      critic_features=critic_features)
        self.parts, self.bounds = [], []
        if replay_grids:
            self._add(TraceReplayEnv(timelines, num_envs=replay_grids, replay=settings,
                                     buf=self._buffers(0, split), **common, **env_config), 0, split)
        if replay_grids < num_envs:
            grid = dict(height=timelines[0].height, width=timelines[0].width)
            world = GardenerEnv(num_envs=num_envs - replay_grids, buf=self._buffers(split, None),
                                first_grid=replay_grids, **common, **{**env_config, **grid})
            self._add(world, split, self.num_agents)
        # The teacher's geometry and costs: the same in both parts.
        self.params = self.parts[0].params

    def _buffers(self, start: int, stop: int | None) -> dict:
        return {name: getattr(self, name)[start:stop] for name in BUFFERS}

    def _add(self, part, start: int, stop: int) -> None:
        self.parts.append(part)
        self.bounds.append((start, stop))

    def reset(self, seed: int | None = None):
        if seed is not None:
            self.seed = seed
        for part in self.parts:
            part.reset(self.seed)
        return self.observations, []

    def step(self, actions):
        actions = as_action_array(actions, self.num_agents)
        infos = []
        for part, (start, stop) in zip(self.parts, self.bounds):
            infos += part.step(actions[start:stop])[4]
        return self.observations, self.rewards, self.terminals, self.truncations, infos

    def state_dict(self) -> dict:
        """Each part's `state_dict()`: a resumed run continues both bit for bit."""
        return {"seed": self.seed, "parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, saved: dict) -> None:
        if len(saved["parts"]) != len(self.parts):
            raise ConfigError("--resume cannot change the mix of replayed traces and kernel "
                              "worlds ([replay] train_fraction)")
        for part, part_state in zip(self.parts, saved["parts"]):
            part.load_state_dict(part_state)
        self.seed = saved["seed"]

    def render(self, grid: int = 0):
        for part in self.parts:
            if grid < part.num_grids:
                return part.render(grid)
            grid -= part.num_grids
        raise IndexError("no such grid")

    def close(self):
        pass


def _generated(count: int, seed: int, settings: ReplaySettings) -> list:
    return [item.trace for item in generate_traces(
        count, seed, node_cpu_millicores=settings.node_cpu_millicores,
        node_memory_bytes=settings.node_memory_bytes)]


def training_timelines(config: dict) -> list:
    """The timelines trained on: `[replay] train_traces`, or `train_count` demo traces generated
    from `train_seed`."""
    settings = replay_settings(config)
    traces = settings.train_traces or _generated(settings.train_count, settings.train_seed, settings)
    return load_timelines(traces, world_params(world_config(config)), settings)


def _heldout_seed(config: dict, settings: ReplaySettings) -> int:
    eval_seed = config["train"]["eval_seed"]
    if not settings.train_traces and eval_seed == settings.train_seed:
        raise ConfigError(f"train.eval_seed must differ from replay.train_seed ({eval_seed}): "
                          "the held-out traces would be the trained ones")
    return eval_seed


def heldout_timelines(config: dict) -> list:
    """The trainer's held-out timelines: `[train] eval_episodes` demo traces generated from
    `[train] eval_seed`, never trained on."""
    settings = replay_settings(config)
    traces = _generated(config["train"]["eval_episodes"], _heldout_seed(config, settings), settings)
    return load_timelines(traces, world_params(world_config(config)), settings)


def check_replay_config(config: dict) -> None:
    """ConfigError for the `[env]` and `[replay]` values training on replays cannot run with."""
    world_params(world_config(config))
    settings = replay_settings(config)
    if settings.train_traces and not Path(settings.train_traces).exists():
        raise ConfigError(f"replay.train_traces {settings.train_traces}: no such file or directory")
    _heldout_seed(config, settings)


def make_replay_vecenv(config: dict, rank: int = 0, world_size: int = 1):
    """The trainer's env for `[base] env_name = replay`: the mix (`[env]`, `[replay]`; `[vec]` and
    `[policy] critic = privileged` as for the gardener). The timelines are compiled once, here.
    One process only: the mix does not split its grids between torchrun's processes."""
    if world_size > 1:
        raise ConfigError(f"env_name = replay trains in one process; run it without torchrun "
                          f"({world_size} processes asked)")
    settings = replay_settings(config)
    env_kwargs = dict(traces=training_timelines(config), num_envs=config["env"]["num_envs"],
                      train_fraction=settings.train_fraction,
                      log_interval=config["env"]["log_interval"], replay=settings,
                      critic_features=config["policy"]["critic"] == "privileged",
                      **world_config(config))
    return vectorize(MixedVectorEnv, env_kwargs, config["vec"])


def episode_env(config: dict, episodes: int, seed: int, heldout: bool = False) -> TraceReplayEnv:
    """`episodes` replayed grids seeded `seed` whose first episodes make a table: grid e plays
    the training traces' trace e mod their number or, `heldout`, the held-out traces'."""
    timelines = heldout_timelines(config) if heldout else training_timelines(config)
    return TraceReplayEnv(timelines, num_envs=episodes, seed=seed, log_interval=2**62,
                          replay=replay_settings(config), **world_config(config))
