"""The replay behind the gardener's contract: `TraceReplayEnv` (native PufferLib 3.0, many grids
per call) and `TraceReplayGymEnv` (`PufferCluster/TraceReplay-v0`). The dynamics are in
`kernels.replay`."""
from __future__ import annotations

import gymnasium
import numpy as np

from puffer_cluster.kernels import replay as kernel
from puffer_cluster.kernels.critic import write_critic_features
from puffer_cluster.kernels.world import NUM_ACTIONS, OBS_SIZE
from puffer_cluster.config import ConfigError, env_defaults
from puffer_cluster.env import (
    KernelVectorEnv, OneGridGymEnv, grid_drivers_for, observation_space, set_gardener_spaces,
    world_params,
)
from puffer_cluster.render import render_ansi, render_rgb
from puffer_cluster.replay.discovery import load_timelines
from puffer_cluster.replay.settings import ReplaySettings, replay_settings
from puffer_cluster.replay.timeline import stack_timelines


def _render(env, grid: int, mode: str | None):
    params = env.params._replace(max_steps=int(env.kernel_timelines.horizon[env.state.trace[grid]]))
    if mode == "rgb_array":
        return render_rgb(env.state, params, grid, getattr(env, "last_action", None))
    return render_ansi(env.state, params, grid)


def _replay_setup(self, traces, replay, env_config):
    params = world_params(env_config)
    self.settings = replay_settings(replay)
    self.replay_params = self.settings.kernel_params()
    self.timelines = load_timelines(traces, params, self.settings)
    self.kernel_timelines = stack_timelines(self.timelines)
    # The overlay world on the timelines' grid (the [env] grid, or smaller when sized to the
    # traces), its node-count-derived parameters (oom_limit's collapse count) rebuilt for it.
    sized = world_params({**env_config, "height": self.timelines[0].height,
                          "width": self.timelines[0].width})
    self.params = self.settings.overlay_world(sized)


class TraceReplayEnv(KernelVectorEnv):
    """`num_envs` replayed clusters stepped together, auto-resetting; a native PufferLib 3.0 env.

    `traces`: a trace file, a directory of them (files that are not replayable traces are
    skipped with a warning), a Trace, a Timeline, or a list of these; grid g replays trace
    `g % len(traces)` with the seeds of grid g of `GardenerEnv(seed=seed)`, so the (trace, seed)
    pairs are the same for every policy. `num_envs` defaults to one grid per trace. `replay`
    overrides `[replay]` keys, the other keyword arguments `[env]` keys; the grid is the
    timelines' (see `load_timelines`). Agents are ordered grid by grid, infos are the mean
    episode statistics every `log_interval` steps, `critic_features=True` appends the privileged
    critic's features (`kernels.critic`, read from the replayed world), as in `GardenerEnv`.
    """

    def __init__(self, traces, num_envs: int | None = None, log_interval: int | None = None,
                 render_mode: str | None = "ansi", buf=None, seed: int = 0,
                 replay: dict | ReplaySettings | None = None, critic_features: bool = False,
                 **env_config):
        defaults = env_defaults()
        _replay_setup(self, traces, replay, env_config)
        self.num_grids = int(num_envs if num_envs is not None else len(self.timelines))
        if self.num_grids < 1:
            raise ConfigError("num_envs must be at least 1")
        self.log_interval = int(log_interval if log_interval is not None else defaults["log_interval"])
        set_gardener_spaces(self, self.num_grids * self.params.agents_per_grid, render_mode,
                            critic_features)
        super().__init__(buf)
        self.state = kernel.allocate_replay_state(self.num_grids, self.params)
        self.state.trace[:] = np.arange(self.num_grids) % len(self.timelines)
        self.seed = seed
        self._reset_kernel, self._step_kernel = grid_drivers_for(kernel, self.num_grids)

    def _reset_all(self):
        self._reset_kernel(self.state, self.params, self.replay_params, self.kernel_timelines,
                           self.observations)
        if self.critic_features:
            write_critic_features(self.state, self.params, self.observations)

    def _step_all(self, actions):
        self._step_kernel(self.state, self.params, self.replay_params, self.kernel_timelines,
                          actions, self.observations, self.rewards, self.terminals,
                          self.truncations, True)
        if self.critic_features:
            write_critic_features(self.state, self.params, self.observations)

    def render(self, grid: int = 0):
        return _render(self, grid, self.render_mode)


class TraceReplayGymEnv(OneGridGymEnv):
    """One replayed cluster as a Gymnasium env (`PufferCluster/TraceReplay-v0`).

    `trace` as in `TraceReplayEnv` (several traces are played in turn, episode by episode).
    `reset(seed=s)` followed by plain `reset()`s replays exactly the episodes that grid 0 of
    `TraceReplayEnv(trace, num_envs=1, seed=s)` plays with the same actions (single trace).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(self, trace=None, render_mode: str | None = None,
                 replay: dict | ReplaySettings | None = None, **env_config):
        if trace is None:
            raise ConfigError("TraceReplayGymEnv needs trace=<a trace file, a directory, a Trace "
                              "or a Timeline>")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        _replay_setup(self, trace, replay, env_config)
        if self.params.agents_per_grid != 1:
            raise ConfigError("TraceReplayGymEnv is single-agent: agents_per_grid must be 1")
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self.state = kernel.allocate_replay_state(1, self.params)
        self._init_buffers(OBS_SIZE)

    def _reset_kernel(self, options):
        self.state.trace[0] = int(self.state.episode[0]) % len(self.timelines)
        kernel.reset_grids_serial(self.state, self.params, self.replay_params,
                                  self.kernel_timelines, self._obs)

    def _step_kernel(self):
        kernel.step_serial(self.state, self.params, self.replay_params, self.kernel_timelines,
                           self._action, self._obs, self._reward, self._terminal,
                           self._truncated, False)

    def render(self):
        if self.render_mode is None:
            return None
        return _render(self, 0, self.render_mode)
