"""ClusterOps behind two front doors: `ClusterOpsEnv`, a native PufferLib env of thousands of
simulated clusters stepped by one Numba call, and `ClusterOpsGymEnv`, one cluster as a
Gymnasium env (`PufferCluster/ClusterOps-v0`). The rules are in `kernels.cluster_ops`."""
from __future__ import annotations

import gymnasium
import numpy as np

from puffer_cluster.kernels import cluster_ops as kernel
from puffer_cluster.kernels.jit_cache import announce_if_cold
from puffer_cluster import CLUSTER_OPS_GYM_ID as GYM_ID  # noqa: F401  (re-exported)
from puffer_cluster.config import ConfigError, load_config
from puffer_cluster.env import KernelVectorEnv, OneGridGymEnv, grid_share, threads_help, vectorize

# Threads pay off for large batches only (an env step is a fraction of a microsecond).
PARALLEL_MIN_ENVS = 256
_PROBABILITIES = ("incident_rate", "initial_severity", "spread_rate", "under_replicated_severity",
                  "cpu_min", "cpu_max", "memory_min", "memory_max", "pressure_memory")


def cluster_ops_params(overrides: dict | None = None) -> kernel.ClusterOpsParams:
    """The shipped `[cluster_ops]` section updated by `overrides`, checked (ConfigError)."""
    defaults = load_config()["cluster_ops"]
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown cluster_ops keys {unknown}; valid keys: {', '.join(defaults)}")
    values = {**defaults, **overrides}
    params = kernel.ClusterOpsParams(**{name: type(defaults[name])(values[name])
                                        for name in kernel.ClusterOpsParams._fields})
    for name in ("nodes", "deployments", "replicas", "max_nodes", "max_steps"):
        if getattr(params, name) < 1:
            raise ConfigError(f"cluster_ops.{name} must be at least 1, got {getattr(params, name)}")
    for name in ("initial_incidents", "pvc_bind_steps", "recover_steps"):
        if getattr(params, name) < 0:
            raise ConfigError(f"cluster_ops.{name} must be >= 0, got {getattr(params, name)}")
    for name in _PROBABILITIES:
        if not 0.0 <= getattr(params, name) <= 1.0:
            raise ConfigError(f"cluster_ops.{name} must be within [0, 1], got {getattr(params, name)}")
    if params.cpu_min > params.cpu_max or params.memory_min > params.memory_max:
        raise ConfigError("cluster_ops: cpu_min <= cpu_max and memory_min <= memory_max")
    if params.event_scale <= 0:
        raise ConfigError(f"cluster_ops.event_scale must be > 0, got {params.event_scale}")
    return params


def observation_space() -> gymnasium.spaces.Box:
    return gymnasium.spaces.Box(low=-1.0, high=1.0, shape=(kernel.OBS_SIZE,), dtype=np.float32)


def render_text(state, params, env: int = 0) -> str:
    """The cluster of env `env` in a few lines: nodes, Deployments, what is revealed."""
    node_names = ("Ready", "NotReady", "Pressure", "Recovering")
    dep_names = ("ok", "CrashLoop", "BadRollout", "PVCPending", "NetworkFault", "UnderReplicated")
    nodes = " ".join(f"n{i}:{node_names[s]}{'(cordoned)' if c else ''}" for i, (s, c) in
                     enumerate(zip(state.node_status[env], state.node_cordoned[env])))
    deps = " ".join(f"d{j}:{dep_names[k]}" + (f"({v:.2f})" if k else "") for j, (k, v) in
                    enumerate(zip(state.dep_issue[env], state.dep_severity[env])))
    known = [kernel.FLAG_NAMES[f] for f in range(kernel.NUM_FLAGS) if state.revealed[env] >> f & 1]
    return (f"step {int(state.step[env])}/{params.max_steps}  return {state.ep_return[env]:+.2f}\n"
            f"nodes: {nodes}\ndeployments: {deps}\nrevealed: {', '.join(known) or 'nothing'}")


def make_cluster_ops_vecenv(config: dict, rank: int = 0, world_size: int = 1):
    """The trainer's env for `[base] env_name = cluster_ops` (`[env]` sizes, `[vec]`): process
    `rank`'s share of the run's clusters."""
    first_grid, num_envs = grid_share(config["env"]["num_envs"], rank, world_size)
    env_kwargs = dict(num_envs=num_envs, first_grid=first_grid,
                      log_interval=config["env"]["log_interval"],
                      cluster_ops=config.get("cluster_ops"))
    return vectorize(ClusterOpsEnv, env_kwargs, config["vec"])


def episode_env(config: dict, episodes: int, seed: int, heldout: bool = False) -> "ClusterOpsEnv":
    """Clusters 0 .. episodes-1 of a `ClusterOpsEnv` seeded `seed`: the same incidents for every
    policy that acts alike."""
    return ClusterOpsEnv(num_envs=episodes, seed=seed, log_interval=2**62,
                         cluster_ops=config.get("cluster_ops"))


class ClusterOpsEnv(KernelVectorEnv):
    """`num_envs` simulated clusters stepped together, auto-resetting; a native PufferLib 3.0 env.

    Every `log_interval` steps `step` returns `[info]`, the mean statistics of the episodes
    finished meanwhile. `parallel` picks the threaded kernel (default: from PARALLEL_MIN_ENVS
    envs on, given more than one Numba thread); both give the same bits. `first_grid > 0` makes these clusters `first_grid ..` of
    the env seeded `seed`."""

    episode_stats = kernel.EPISODE_STATS

    def __init__(self, num_envs: int = 1024, log_interval: int | None = 64,
                 render_mode: str | None = "ansi", buf=None, seed: int = 0,
                 cluster_ops: dict | None = None, parallel: bool | None = None,
                 first_grid: int = 0):
        self.params = cluster_ops_params(cluster_ops)
        self.num_envs_ = int(num_envs)
        if self.num_envs_ < 1:
            raise ConfigError("num_envs must be at least 1")
        self.log_interval = int(log_interval if log_interval is not None else 64)
        self.render_mode = render_mode
        self.single_observation_space = observation_space()
        self.single_action_space = gymnasium.spaces.Discrete(kernel.NUM_ACTIONS)
        self.num_agents = self.num_envs_
        super().__init__(buf)
        self.state = kernel.allocate_state(self.num_agents, self.params)
        self.seed, self.first_grid = seed, int(first_grid)
        self.parallel = (self.num_agents >= PARALLEL_MIN_ENVS and threads_help(self.num_agents)
                         if parallel is None else bool(parallel))
        self._reset_kernel = kernel.reset_envs if self.parallel else kernel.reset_envs_serial
        self._step_kernel = kernel.step_envs if self.parallel else kernel.step_envs_serial

    def _reset_all(self):
        self._reset_kernel(self.params, self.state, self.observations)

    def _step_all(self, actions):
        self._step_kernel(self.params, self.state, actions, self.observations, self.rewards,
                          self.terminals, self.truncations, True)

    def render(self, env: int = 0):
        return render_text(self.state, self.params, env)


class ClusterOpsGymEnv(OneGridGymEnv):
    """One simulated cluster as a Gymnasium env (`PufferCluster/ClusterOps-v0`).

    `reset(seed=s)` then plain `reset()`s play exactly the episodes env 0 of
    `ClusterOpsEnv(num_envs=1, seed=s)` plays with the same actions."""

    episode_stats = kernel.EPISODE_STATS
    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, cluster_ops: dict | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.params = cluster_ops_params(cluster_ops)
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = gymnasium.spaces.Discrete(kernel.NUM_ACTIONS)
        self.state = kernel.allocate_state(1, self.params)
        self._init_buffers(kernel.OBS_SIZE)

    def _reset_kernel(self, options):
        announce_if_cold(kernel.reset_envs_serial, kernel.step_envs_serial)
        kernel.reset_envs_serial(self.params, self.state, self._obs)

    def _step_kernel(self):
        kernel.step_envs_serial(self.params, self.state, self._action, self._obs, self._reward,
                                self._terminal, self._truncated, False)

    def _info(self) -> dict:
        return {"open_incidents": int(kernel._open_incidents(self.params, self.state, 0))}

    def render(self):
        if self.render_mode is None:
            return None
        return render_text(self.state, self.params, 0)
