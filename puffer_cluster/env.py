"""The gardener world behind two front doors: a native PufferLib vector env and a Gymnasium env.

Both are thin: the state lives in `kernels.world.WorldState` buffers and every rule runs in a
Numba kernel of World v2: `kernels.event` (the default) or `kernels.dense`, bit-identical.
"""
from __future__ import annotations

import gymnasium
import numba
import numpy as np
import pufferlib
import pufferlib.vector

from puffer_cluster.kernels import dense, event
from puffer_cluster.kernels.critic import NUM_CRITIC_FEATURES, write_critic_features
from puffer_cluster.kernels.jit_cache import announce_if_cold
from puffer_cluster.kernels.world import (
    EPISODE_STATS, NUM_ACTIONS, OBS_SIZE, WorldParams, allocate_state, grid_seeds, make_params,
)
from puffer_cluster.config import ConfigError, env_defaults, world_config
from puffer_cluster.render import render_ansi, render_rgb


class InvalidActionError(ValueError):
    """An action outside Discrete(8), or a non-finite / non-integral action value."""


KERNELS = {"event": event, "dense": dense}


def world_kernel(name: str | None):
    """The kernel module named `name` (default: the config's `[env] kernel`)."""
    name = env_defaults()["kernel"] if name is None else name
    if name not in KERNELS:
        raise ConfigError(f"kernel = {name!r} must be one of {sorted(KERNELS)}")
    return KERNELS[name]


def _checked_int(name: str, value, minimum: int | None = None) -> int:
    """A whole number (>= minimum when given): ints, or floats with an integral value; not bools
    or strings."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or (isinstance(value, (float, np.floating)) and not np.isfinite(value)) \
            or int(value) != value \
            or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ConfigError(f"{name} = {value!r} must be a whole number{bound}")
    if abs(int(value)) > 2**62:
        raise ConfigError(f"{name} = {value!r} is out of range")
    return int(value)


def world_params(overrides: dict) -> WorldParams:
    """World parameters: the shipped `[env]` defaults updated by `overrides` (checked)."""
    defaults = env_defaults()
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown env keys {unknown}; valid keys: {', '.join(defaults)}")
    for key, value in overrides.items():
        default = defaults[key]
        if isinstance(default, int) and not isinstance(default, bool):
            _checked_int(key, value)
        elif isinstance(default, float) and (isinstance(value, (bool, np.bool_, str))
                                             or not isinstance(value, (int, float, np.number))):
            raise ConfigError(f"{key} = {value!r} must be a number")
    try:
        return make_params({**defaults, **overrides})
    except ValueError as error:
        raise ConfigError(str(error)) from None


def observation_space(size: int = OBS_SIZE, low: float = -1.0, high: float = 1.0) -> gymnasium.spaces.Box:
    return gymnasium.spaces.Box(low=low, high=high, shape=(size,), dtype=np.float32)


def set_gardener_spaces(env, num_agents: int, render_mode: str | None,
                        critic_features: bool) -> None:
    """What a native env behind the gardener's contract sets before PufferLib allocates its
    buffers: `num_agents` agents, each seeing OBS_SIZE floats (then the privileged critic's
    features when `critic_features`) and choosing one of NUM_ACTIONS actions; its render mode."""
    env.render_mode = render_mode
    env.critic_features = NUM_CRITIC_FEATURES if critic_features else 0
    env.single_observation_space = observation_space(OBS_SIZE + env.critic_features)
    env.single_action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
    env.num_agents = num_agents


def as_action_array(actions, count: int, num_actions: int = NUM_ACTIONS) -> np.ndarray:
    """Actions as a writable, contiguous int32 array (one compiled kernel signature); integral
    floats are accepted, NaN/inf/fractions are refused; out-of-range values stay out of range
    (counted invalid by the kernels), never wrap."""
    actions = np.asarray(actions)
    if actions.shape != (count,):
        raise InvalidActionError(f"expected an array of shape ({count},), got {actions.shape}")
    if not np.issubdtype(actions.dtype, np.integer):
        if not np.issubdtype(actions.dtype, np.floating) or not np.all(np.isfinite(actions)) \
                or np.any(actions != np.round(actions)):
            raise InvalidActionError(f"actions must be integers in [0, {num_actions}); "
                                     f"got dtype {actions.dtype} with non-integral values")
    if actions.dtype == np.int32 and actions.flags.writeable and actions.flags.c_contiguous:
        return actions
    return np.ascontiguousarray(np.clip(actions, -1, num_actions).astype(np.int32))


def vectorize(env_class, env_kwargs: dict, vec: dict):
    """The `[vec]` section's env: the native env itself, or Serial/Multiprocessing copies of it."""
    backend = vec["backend"]
    if backend == "PufferEnv":
        return env_class(seed=vec["seed"], **env_kwargs)
    if backend not in ("Serial", "Multiprocessing"):
        raise ConfigError(f"vec.backend must be one of PufferEnv, Serial, Multiprocessing, got {backend!r}")
    extra = {}
    if backend == "Multiprocessing":
        extra = dict(num_workers=vec["num_workers"], batch_size=vec["num_envs"])
    return pufferlib.vector.make(env_class, backend=getattr(pufferlib.vector, backend),
                                 num_envs=vec["num_envs"], env_kwargs=env_kwargs,
                                 seed=vec["seed"], **extra)


def grid_share(num_grids: int, rank: int, world_size: int) -> tuple[int, int]:
    """The first grid and the number of grids process `rank` of `world_size` steps: an even,
    contiguous share of the run's `num_grids`, so that grid i is the same world whatever the
    process count."""
    if num_grids % world_size:
        raise ConfigError(f"env.num_envs (the run's grids, shared by its processes) must be a "
                          f"multiple of the {world_size} processes, got {num_grids}")
    share = num_grids // world_size
    return rank * share, share


def make_gardener_vecenv(config: dict, rank: int = 0, world_size: int = 1):
    """The trainer's gardener env (`[env]`, `[vec]`; `[policy] critic = privileged` appends the
    critic's features to the observations): process `rank`'s share of the run's grids."""
    first_grid, num_grids = grid_share(config["env"]["num_envs"], rank, world_size)
    env_kwargs = dict(num_envs=num_grids, first_grid=first_grid,
                      log_interval=config["env"]["log_interval"],
                      critic_features=config["policy"]["critic"] == "privileged",
                      **world_config(config))
    return vectorize(GardenerEnv, env_kwargs, config["vec"])


def stats_info(state, names=EPISODE_STATS) -> dict[str, float] | None:
    """Mean episode statistics (rows named `names`) over the episodes finished since the last
    call, then reset."""
    finished = int(state.finished_count.sum())
    if finished == 0:
        return None
    means = state.finished_sum.sum(axis=0) / finished
    state.finished_sum[:] = 0
    state.finished_count[:] = 0
    return {**dict(zip(names, means.tolist())), "n": finished}


def threads_help(batch: int) -> bool:
    """Whether a kernel's parallel driver can beat its serial build on `batch` grids: not on one
    grid, nor when Numba runs one thread, where a parallel call only adds its scheduling (tens of
    microseconds a call, more than a 64x64 grid's step)."""
    return batch > 1 and numba.get_num_threads() > 1


def grid_drivers_for(kernel, grids: int):
    """(reset_grids, step) of a grid kernel module (gardener or replay) for `grids` grids: its
    parallel drivers where threads can help (`threads_help`), else its serial builds."""
    if threads_help(grids):
        return kernel.reset_grids, kernel.step
    return kernel.reset_grids_serial, kernel.step_serial


class KernelVectorEnv(pufferlib.PufferEnv):
    """Native PufferLib plumbing shared by the batched envs (gardener, trace replay, SimArena):
    per-grid seeds from the env's seed, reset, and steps that return PufferLib-style aggregated
    episode statistics every `log_interval` steps. A subclass sets `state`, `seed`,
    `log_interval`, its Numba kernels `_reset_kernel` and `_step_kernel`, and implements
    `_reset_all()` and `_step_all(actions)`. Its grids are grids `first_grid ..` of an env
    seeded `seed`: one process's share of a run's grids (`grid_share`)."""

    tick = 0
    first_grid = 0
    _has_reset = False
    episode_stats = EPISODE_STATS  # names of the rows of `state.finished_sum`

    def reset(self, seed: int | None = None):
        if seed is not None:
            self.seed = seed
        announce_if_cold(self._reset_kernel, self._step_kernel)
        self.state.grid_seed[:] = grid_seeds(self.seed, self.first_grid,
                                              self.state.grid_seed.shape[0])
        self.state.episode[:] = 0
        self.state.finished_sum[:] = 0
        self.state.finished_count[:] = 0
        self._reset_all()
        self.rewards[:] = 0
        self.terminals[:] = False
        self.truncations[:] = False
        self.tick = 0
        self._has_reset = True
        return self.observations, []

    def step(self, actions):
        if not self._has_reset:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        self._step_all(self._checked_actions(actions))
        self.tick += 1
        infos = []
        if self.tick % self.log_interval == 0:
            info = stats_info(self.state, self.episode_stats)
            if info is not None:
                infos.append(info)
        return self.observations, self.rewards, self.terminals, self.truncations, infos

    def _checked_actions(self, actions) -> np.ndarray:
        return as_action_array(actions, self.num_agents, self.single_action_space.n)

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue these envs bit for bit: the state arrays
        (a NamedTuple of arrays), the seed, the tick and the last observations."""
        return {"state": {name: array.copy() for name, array in self.state._asdict().items()},
                "seed": self.seed, "tick": self.tick, "observations": self.observations.copy()}

    def load_state_dict(self, saved: dict) -> None:
        """Put the envs back where `state_dict()` left them (same batch and sizes)."""
        for name, array in saved["state"].items():
            target = getattr(self.state, name)
            if target.shape != array.shape:
                raise ConfigError(f"--resume cannot change the env's batch or size: the saved "
                                  f"{name} has shape {array.shape}, this config's {target.shape}")
            target[...] = array
        self.seed, self.tick = saved["seed"], saved["tick"]
        self.observations[...] = saved["observations"]
        self._has_reset = True

    def close(self):
        pass


class GardenerEnv(KernelVectorEnv):
    """`num_envs` gardener grids stepped together, auto-resetting; a native PufferLib 3.0 env.

    Agents are ordered grid by grid: agent `g * agents_per_grid + a`. Every `log_interval` steps
    `step` returns `[info]`, the mean statistics of the episodes finished meanwhile.
    `critic_features=True` appends `kernels.critic`'s grid-wide features to every observation,
    for a privileged critic in training (the actor still reads the first OBS_SIZE values).
    `first_grid > 0` makes these grids `first_grid ..` of the env seeded `seed`.
    """

    def __init__(self, num_envs: int | None = None, log_interval: int | None = None,
                 render_mode: str | None = "ansi", buf=None, seed: int = 0,
                 critic_features: bool = False, kernel: str | None = None, first_grid: int = 0,
                 **env_config):
        defaults = env_defaults()
        self.num_grids = _checked_int("num_envs", num_envs if num_envs is not None
                                      else defaults["num_envs"], 1)
        self.log_interval = _checked_int("log_interval", log_interval if log_interval is not None
                                         else defaults["log_interval"], 1)
        _checked_int("seed", seed, 0)
        self.kernel = world_kernel(kernel)
        self.params = world_params(env_config)
        set_gardener_spaces(self, self.num_grids * self.params.agents_per_grid, render_mode,
                            critic_features)
        super().__init__(buf)
        self.state = allocate_state(self.num_grids, self.params, event=self.kernel is event)
        self.seed, self.first_grid = int(seed), _checked_int("first_grid", first_grid, 0)
        self._reset_kernel, self._step_kernel = grid_drivers_for(self.kernel, self.num_grids)

    def _reset_all(self):
        self._reset_kernel(self.state, self.params, self.observations)
        if self.critic_features:
            write_critic_features(self.state, self.params, self.observations)

    def _step_all(self, actions):
        self._step_kernel(self.state, self.params, actions, self.observations, self.rewards,
                          self.terminals, self.truncations, True)
        if self.critic_features:
            write_critic_features(self.state, self.params, self.observations)

    def render(self, grid: int = 0):
        if self.render_mode == "rgb_array":
            return render_rgb(self.state, self.params, grid)
        return render_ansi(self.state, self.params, grid)


class OneGridGymEnv(gymnasium.Env):
    """Gymnasium plumbing shared by the one-grid envs (gardener, trace replay, SimArena): the
    kernel's one-row buffers, Gymnasium seeding mapped onto the kernel's grid seed and episode
    counter, action checks, and the end of an episode. A subclass sets `state`, `action_space`
    and calls `_init_buffers`, then implements `_reset_kernel(options)` and `_step_kernel()`."""

    episode_stats = EPISODE_STATS  # names of the rows of `state.last_stats`

    def _init_buffers(self, obs_size: int) -> None:
        self._obs = np.zeros((1, obs_size), dtype=np.float32)
        self._reward = np.zeros(1, dtype=np.float32)
        self._terminal = np.zeros(1, dtype=bool)
        self._truncated = np.zeros(1, dtype=bool)
        self._action = np.zeros(1, dtype=np.int32)
        self.last_action: int | None = None  # named in rgb frames
        self._needs_reset = True
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            # Unseeded first reset: draw the seed from Gymnasium's entropy-seeded generator.
            seed = seed if seed is not None else int(self.np_random.integers(2**63))
            self.state.grid_seed[:] = grid_seeds(seed, 0, 1)
            self.state.episode[:] = 0
            self._seeded = True
        else:
            self.state.episode[:] += np.uint64(1)
        self._reset_kernel(options)
        self.last_action = None
        self._needs_reset = False
        return self._obs[0].copy(), self._info()

    def step(self, action):
        if self._needs_reset:
            raise gymnasium.error.ResetNeeded("call reset() before step() (the episode has ended)")
        actions = self.action_space.n
        if isinstance(action, np.ndarray) and action.shape == () \
                and np.issubdtype(action.dtype, np.integer):
            action = action.item()
        # Python ints are unbounded: compare before any conversion (2**63 must not overflow).
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)) \
                or not 0 <= action < actions:
            raise InvalidActionError(f"action {action!r} is not in Discrete({actions}): "
                                     f"use an integer in [0, {actions})")
        self._action[0] = self.last_action = int(action)
        self._step_kernel()
        terminated, truncated = bool(self._terminal[0]), bool(self._truncated[0])
        info = self._info()
        if terminated or truncated:
            self._needs_reset = True
            info.update(zip(self.episode_stats, self.state.last_stats[0].tolist()))
        return self._obs[0].copy(), float(self._reward[0]), terminated, truncated, info

    def _info(self) -> dict:
        """Extra info of every reset and step (the episode statistics are added at its end)."""
        return {}


class GardenerGymEnv(OneGridGymEnv):
    """One gardener grid as a Gymnasium env (registered as `PufferCluster/Gardener-v0`).

    `reset(seed=s)` followed by plain `reset()`s replays exactly the episodes that grid 0 of
    `GardenerEnv(num_envs=1, seed=s)` plays with the same actions.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None, kernel: str | None = None, **env_config):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.kernel = world_kernel(kernel)
        self.params = world_params(env_config)
        if self.params.agents_per_grid != 1:
            raise ConfigError("GardenerGymEnv is single-agent: agents_per_grid must be 1")
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self.state = allocate_state(1, self.params, event=self.kernel is event)
        self._init_buffers(OBS_SIZE)

    def _reset_kernel(self, options):
        announce_if_cold(self.kernel.reset_grids_serial, self.kernel.step_serial)
        self.kernel.reset_grids_serial(self.state, self.params, self._obs)

    def _step_kernel(self):
        self.kernel.step_serial(self.state, self.params, self._action, self._obs, self._reward,
                                self._terminal, self._truncated, False)

    def render(self):
        if self.render_mode == "rgb_array":
            return render_rgb(self.state, self.params, 0, self.last_action)
        if self.render_mode == "ansi":
            return render_ansi(self.state, self.params, 0)
        return None
