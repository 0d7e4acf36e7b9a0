"""Shared fixtures and helpers of the tests: the gardener world's, and the sandbox of the tests
that talk to a (fake) Kubernetes API.

Tests never rely on the exact shipped constants of `configs/gardener.ini` (they are being tuned):
every rule test builds its parameters explicitly from `params_with(...)` / `QUIET`.
"""
from __future__ import annotations

import signal

import numpy as np
import pytest

from puffer_cluster.kernels import dense, event, reference
from puffer_cluster.kernels.fixed import (
    CAP, CAP_ONE, CPU_BASE, FADE, LEAK, LEAK_ONE, MEM, MEM_T, ONE, PRIO, PRIO_ONE, SPIKE, SPIKE_T,
)
from puffer_cluster.kernels.world import OBS_SIZE, allocate_state, grid_seeds, make_params, node_ratios
from puffer_cluster.config import env_defaults

# The three implementations of the world, for `pytest.mark.parametrize("backend", BACKENDS)`.
BACKENDS = [pytest.param(reference, id="reference"), pytest.param(dense, id="dense"),
            pytest.param(event, id="event")]

# A world where nothing happens by itself: no spikes, no leak, no regen, no health bonus and no
# collapse, so that the effect of one action or one forced event can be computed by hand.
QUIET = dict(
    height=6, width=6, agents_per_grid=1, max_steps=1000,
    base_load_min=0.1, base_load_max=0.3, mem_init_min=0.1, mem_init_max=0.2,
    leak_min=0.0, leak_max=0.0, red_queen_horizon=100.0,
    spike_rate=0.0, spike_min=0.2, spike_max=0.4, spike_fade=0.0, overload_mem_jump=0.25,
    restart_mem=0.25, crit_fraction=0.2, crit_threshold=0.75, cap_max=3.0,
    clean_fraction=0.5, clean_useful_mem=0.5, clean_cost=0.125, scale_cost=0.5,
    budget_init=1.0, budget_regen=0.0, health_bonus=0.0,
    oom_penalty=1.0, crit_weight=2.0, overload_penalty=0.25, clean_waste_penalty=0.5,
    invalid_penalty=0.0625, collapse_penalty=10.0, crit_limit=1000, oom_limit=1.0,
)

# A harsh world: fast leaks, big spikes, short episodes, so that OOMs, overloads, collapses,
# truncations and auto-resets all happen within a few hundred steps (random actions: about
# 2 of 3 episodes of a 6x6 grid collapse, the others reach max_steps).
HARSH = dict(
    max_steps=60, base_load_min=0.1, base_load_max=0.6, mem_init_min=0.1, mem_init_max=0.6,
    leak_min=0.002, leak_max=0.01, red_queen_horizon=50.0, spike_rate=0.05,
    spike_min=0.2, spike_max=0.9, spike_fade=0.15, overload_mem_jump=0.1, restart_mem=0.3,
    crit_fraction=0.2, crit_threshold=0.8, cap_max=4.0, clean_fraction=0.5,
    clean_useful_mem=0.3, clean_cost=0.1, scale_cost=0.5, budget_init=1.0, budget_regen=0.02,
    health_bonus=0.1, oom_penalty=1.0, crit_weight=2.0, overload_penalty=0.2,
    clean_waste_penalty=0.5, invalid_penalty=0.05, collapse_penalty=10.0,
    crit_limit=5, oom_limit=0.25,
)


def params_with(**overrides):
    """WorldParams from the shipped `[env]` defaults updated by `overrides`."""
    return make_params({**env_defaults(), **overrides})


def quiet_params(**overrides):
    return params_with(**{**QUIET, **overrides})


def node(params, y, x):
    """Row-major node index of (y, x)."""
    return y * params.width + x


def obs_index(dy, dx, channel):
    """Index in the observation of channel `channel` of the neighbour at offset (dy, dx)."""
    return ((dy + 1) * 3 + (dx + 1)) * 3 + channel


def node_loads(state, params, grid):
    """Every node of `grid` now as v1 stored it: absolute loads (ratio * cap), float64 arrays."""
    cpu, mem, prio = node_ratios(state, params, grid)
    record = state.nodes[grid]
    cap = record[:, CAP] / CAP_ONE
    t = state.step[grid]
    spike = (record[:, SPIKE] - np.minimum(record[:, SPIKE], record[:, FADE] * (t - record[:, SPIKE_T]))) / ONE
    return dict(cpu=record[:, CPU_BASE] / ONE * cap, mem=mem * cap, spike=spike * cap, cap=cap,
                prio=prio, leak=record[:, LEAK] / LEAK_ONE * cap, fade=record[:, FADE] / ONE * cap)


def set_nodes(state, params, grid, nodes=slice(None), **values):
    """Give nodes of `grid` absolute values (cpu base, mem, spike, leak, fade loads; cap; prio),
    keeping the others, as World v2 records at the grid's current step. Event-kernel states are
    then rebuilt (sums and wheels)."""
    loads = node_loads(state, params, grid)
    for name, value in values.items():
        loads[name][nodes] = value
    record = state.nodes[grid]
    cap = loads["cap"]
    record[:, CAP] = np.round(cap * CAP_ONE).astype(np.int64)
    record[:, CPU_BASE] = (loads["cpu"] / cap * ONE).astype(np.int64)
    record[:, MEM] = (loads["mem"] / cap * ONE).astype(np.int64)
    record[:, SPIKE] = (loads["spike"] / cap * ONE).astype(np.int64)
    record[:, LEAK] = (loads["leak"] / cap * LEAK_ONE).astype(np.int64)
    record[:, FADE] = (loads["fade"] / cap * ONE).astype(np.int64)
    record[:, PRIO] = (loads["prio"] * PRIO_ONE).astype(np.int64)
    record[:, MEM_T] = record[:, SPIKE_T] = state.step[grid]
    if state.wheel.size:
        event.rebuild_grids(state, params)


class World:
    """Grids of one backend (`kernels.reference`, `kernels.dense` or `kernels.event`) with their
    own buffers."""

    def __init__(self, backend, params, num_grids=1, seed=0, first_grid=0):
        self.backend, self.params = backend, params
        self.num_grids = num_grids
        self.num_agents = num_grids * params.agents_per_grid
        self.state = allocate_state(num_grids, params, event=backend is event)
        self.state.grid_seed[:] = grid_seeds(seed, first_grid, num_grids)
        self.obs = np.zeros((self.num_agents, OBS_SIZE), dtype=np.float32)
        self.rewards = np.zeros(self.num_agents, dtype=np.float32)
        self.terminals = np.zeros(self.num_agents, dtype=bool)
        self.truncations = np.zeros(self.num_agents, dtype=bool)
        self.backend.reset_grids(self.state, self.params, self.obs)

    def step(self, actions=0, auto_reset=True):
        actions = np.ascontiguousarray(
            np.broadcast_to(np.asarray(actions, dtype=np.int32), (self.num_agents,)))
        self.backend.step(self.state, self.params, actions, self.obs, self.rewards,
                          self.terminals, self.truncations, auto_reset)
        return (self.obs.copy(), self.rewards.copy(), self.terminals.copy(),
                self.truncations.copy())

    def place(self, y, x, grid=0, agent=0):
        self.state.agent_y[grid, agent] = y
        self.state.agent_x[grid, agent] = x

    def set(self, grid=0, nodes=slice(None), **values):
        set_nodes(self.state, self.params, grid, nodes, **values)

    def loads(self, name):
        """(grids, nodes) float64 array of one of `node_loads`' values."""
        return np.array([node_loads(self.state, self.params, g)[name] for g in range(self.num_grids)])

    @property
    def mem(self):
        return self.loads("mem")

    @property
    def spike(self):
        return self.loads("spike")

    @property
    def cap(self):
        return self.loads("cap")

    def snapshot(self):
        """A deep copy of every state array, by field name."""
        return {name: np.array(value, copy=True) for name, value in self.state._asdict().items()}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_actions(rng, count, low=0, high=8):
    return rng.integers(low, high, size=count).astype(np.int32)


# What the tests' short training runs share: 32 grids of 6x6, segments of 8 steps, one torch
# thread on the CPU, no progress lines, evaluations of 8 episodes.
TINY_RUN = {
    "env": {"num_envs": 32, "height": 6, "width": 6},
    "train": {"num_steps": 8, "eval_episodes": 8, "torch_threads": 1, "device": "cpu",
              "print_interval": 0.0},
    "eval": {"episodes": 8},
}


def tiny_run_ini(**sections: dict) -> str:
    """The text of a config file: TINY_RUN with the keys of `sections` (by section) added."""
    merged = {name: dict(keys) for name, keys in TINY_RUN.items()}
    for name, keys in sections.items():
        merged.setdefault(name, {}).update(keys)
    return "".join(f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
                   for name, keys in merged.items())


@pytest.fixture
def tiny_ini(tmp_path, request):
    """The test module's TINY_INI (a run of a few seconds, `tiny_run_ini`) as a config file."""
    path = tmp_path / "tiny.ini"
    path.write_text(request.module.TINY_INI)
    return path


# ---------------------------------------------------------------- Kubernetes tests' sandbox
# (`pytestmark = pytest.mark.usefixtures(...)` in the modules that need them)


@pytest.fixture
def no_real_kubeconfig(tmp_path, monkeypatch):
    """Never let a developer's ~/.kube/config or $KUBECONFIG reach a test."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt here even when the test run inherited SIGINT ignored (a
    background job of a non-interactive shell does), so the simulated Ctrl-C is not a no-op."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
