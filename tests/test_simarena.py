"""SimArena: sim-arena's edit -> re-simulate -> observe loop as a batched env."""
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from puffer_cluster.kernels import simarena as kernel
from puffer_cluster.kernels.simarena import (
    BUMP_CPU, BUMP_MEM, EPISODE_STATS, NOOP, NUM_ACTIONS, OBS_CPU_CEILING, OBS_IDLE_EDIT,
    OBS_MEM_CEILING, OBS_NO_CPU, OBS_NO_MEM, OBS_NO_SLOT, OBS_PENDING, OBS_POD_CPU, OBS_POD_MEM,
    OBS_READY, OBS_REPLICAS_CEILING, OBS_SIZE, OBS_TARGET, OBS_TIME, OBS_TOTAL, REDUCE_CPU,
    REDUCE_MEM, SCALE_DOWN, SCALE_UP,
)
from puffer_cluster.cli import main as cli_main
from puffer_cluster.config import ConfigError, bundled_config_path, load_config
from puffer_cluster.env import InvalidActionError
from puffer_cluster.evaluate import evaluate
from puffer_cluster.replay import ReplaySettings, compile_timeline
from puffer_cluster.simarena import (
    GYM_ID, SimArenaEnv, SimArenaGymEnv, SimArenaSettings, compile_scenario,
    format_simarena_table, heuristic_actions, load_scenarios, observe_steps, random_actions,
    simarena_replay, simarena_settings,
)
from puffer_cluster.traces import Trace, TraceEvent, save_trace
from puffer_cluster.traces.generate import SCENARIOS, generate_trace, generate_traces, write_traces
from puffer_cluster.traces.ops import SafeguardError, apply_op, deployment_resources
from puffer_cluster.trainers.checkpoint import load_checkpoint
from puffer_cluster.trainers.ppo import train

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MIB, GIB = 2**20, 2**30
OPS = {BUMP_CPU: "bump_cpu", BUMP_MEM: "bump_mem", SCALE_UP: "scale_up", REDUCE_CPU: "reduce_cpu",
       REDUCE_MEM: "reduce_mem", SCALE_DOWN: "scale_down"}


def deployment(name, replicas, cpu, memory):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                         {"name": name, "image": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}}}


def crafted(cpu="500m", memory="512Mi", replicas=3, target=3, background=None):
    """A trace: optional background Deployment (replicas, cpu, memory), then `web`."""
    objects = [deployment("background", *background)] if background else []
    objects.append(deployment("web", replicas, cpu, memory))
    return Trace(config={"trackedObjects": {"apps/v1.Deployment": {"podSpecTemplatePaths": ["/spec/template"]}}},
                 events=[TraceEvent(1000, objects, [])],
                 extra_fields={"metadata": {"scenario": {"name": "crafted", "target": target}}})


def gym_env(trace, **simarena):
    return SimArenaGymEnv(traces=[trace], simarena=simarena)


def test_settings_are_the_shipped_section_and_are_checked():
    assert simarena_settings(load_config()) == SimArenaSettings()
    assert simarena_settings(load_config(bundled_config_path("simarena.ini"))).reward == "shaped"
    for bad in ({"reward": "golden"}, {"nodes": 0}, {"sampling": "sorted"}, {"target": 0},
                {"min_replicas": 5, "max_replicas": 4}, {"max_steps": "many"}):
        with pytest.raises(ConfigError):
            simarena_settings(bad)
    with pytest.raises(ConfigError, match="unknown simarena keys"):
        simarena_settings({"colour": "red"})


def test_observation_and_shaped_rewards_of_a_crafted_situation():
    # 3 pods of 17 CPU on 4 nodes of 16 CPU, two of which run a 4 CPU background pod.
    env = gym_env(crafted(cpu="17000m", memory="2Gi", background=(2, "4", "8Gi")))
    scenario = env.scenarios[0]
    assert scenario.bg_cpu.tolist() == [4000, 4000, 0, 0]
    assert scenario.bg_mem.tolist() == [8 * GIB, 8 * GIB, 0, 0]
    obs, info = env.reset(seed=0)
    assert (info["ready"], info["pending"], info["total"], info["target"]) == (0, 3, 3, 3)
    expected = np.zeros(OBS_SIZE, dtype=np.float32)
    expected[[OBS_PENDING, OBS_TOTAL, OBS_NO_CPU]] = 1.0
    expected[[OBS_TARGET, OBS_REPLICAS_CEILING]] = 0.03
    expected[[OBS_POD_CPU, OBS_CPU_CEILING]] = 17 / 16
    expected[[OBS_POD_MEM, OBS_MEM_CEILING]] = 2 / 32
    np.testing.assert_array_equal(obs, expected)

    obs, reward, terminated, truncated, info = env.step(REDUCE_CPU)  # 16500m: fits nowhere
    assert reward == pytest.approx(-0.1 * 3 - 0.05 * 3) and not (terminated or truncated)
    assert obs[OBS_TIME] == pytest.approx(1 / 64)
    obs, reward, *_ = env.step(REDUCE_CPU)  # 16000m: the two empty nodes take one pod each
    assert (obs[OBS_READY], obs[OBS_PENDING]) == pytest.approx((2 / 3, 1 / 3))
    assert obs[OBS_NO_CPU] == 1.0 and obs[OBS_NO_MEM] == 0.0
    assert reward == pytest.approx(-0.1 - 0.05)
    for _ in range(7):  # down to 12500m: the background nodes still lack room
        obs, reward, terminated, _, info = env.step(REDUCE_CPU)
        assert info["ready"] == 2 and not terminated
    obs, reward, terminated, truncated, info = env.step(REDUCE_CPU)  # 12000m + 4000m = 16000m fits
    assert reward == 1.0 and terminated and not truncated
    assert (info["ready"], info["pending"], info["solved"], info["episode_length"], info["edits"]) \
        == (3, 0, 1.0, 10, 10)
    assert info["episode_return"] == pytest.approx(-0.45 - 8 * 0.15 + 1.0)
    assert obs[OBS_READY] == 1.0 and obs[OBS_NO_CPU] == 0.0
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(NOOP)

    over = gym_env(crafted(replicas=5))
    over.reset(seed=0)
    assert over.step(NOOP)[1] == pytest.approx(-0.1 * 2 - 0.15 * 2)
    under = gym_env(crafted(replicas=1))
    under.reset(seed=0)
    assert under.step(NOOP)[1] == pytest.approx(-0.1 * 2 - 0.08 * 2)
    far = gym_env(crafted(replicas=100, target=3))
    far.reset(seed=0)
    assert far.step(NOOP)[1] == -1.0  # clipped


def test_base_max_punish_and_cost_aware_rewards():
    env = gym_env(crafted(replicas=4), reward="base")
    env.reset(seed=0)
    assert env.step(NOOP)[1] == 0.0
    _, reward, terminated, _, _ = env.step(SCALE_DOWN)
    assert reward == 1.0 and terminated

    punish = gym_env(crafted(cpu="17000m", memory="33Gi", replicas=101, target=2), reward="max_punish")
    punish.reset(seed=0)
    assert punish.step(NOOP)[1] == pytest.approx(-1.5)  # cpu, memory and replicas over their ceilings
    partly = gym_env(crafted(cpu="17000m", replicas=2, target=2), reward="max_punish",
                     max_punish_penalty=0.25)
    partly.reset(seed=0)
    assert partly.step(NOOP)[1] == pytest.approx(-0.25)
    fixed = gym_env(crafted(cpu="16000m", replicas=2, target=2), reward="max_punish")
    fixed.reset(seed=0)
    assert fixed.step(NOOP)[1] == 1.0

    cost = gym_env(crafted(replicas=4), reward="cost_aware")
    cost.reset(seed=0)
    # Shaped -0.25 (one replica over), no edit, 4 x (500m/16 + 512Mi/32Gi) / 2 of 4 nodes reserved.
    reserved = 4 * (500 / 16000 + 512 / 32768) / (2 * 4)
    assert cost.step(NOOP)[1] == pytest.approx(-0.1 - 0.15 - 0.1 * reserved)
    _, reward, terminated, _, _ = cost.step(SCALE_DOWN)
    assert terminated
    assert reward == pytest.approx(1.0 - 0.02 - 0.1 * 3 * (500 / 16000 + 512 / 32768) / 8)


def test_episodes_end_when_healthy_or_after_max_steps_and_edits_obey_the_safeguards():
    env = gym_env(crafted(cpu="17000m", memory="100Mi", replicas=1, target=1), max_steps=4)
    env.reset(seed=0)
    obs, _, _, _, info = env.step(BUMP_CPU)  # 17500m > the 16 CPU ceiling: refused
    assert obs[OBS_IDLE_EDIT] == 1.0 and obs[OBS_CPU_CEILING] == pytest.approx(17 / 16)
    obs, *_ = env.step(SCALE_DOWN)  # already at the floor of 1 replica
    assert obs[OBS_IDLE_EDIT] == 1.0 and obs[OBS_TOTAL] == 1.0
    obs, *_ = env.step(REDUCE_MEM)  # 100Mi -> the 64Mi floor: changed
    assert obs[OBS_IDLE_EDIT] == 0.0 and obs[OBS_POD_MEM] == pytest.approx(64 / 32768)
    obs, reward, terminated, truncated, info = env.step(REDUCE_MEM)  # at the floor
    assert truncated and not terminated
    assert (info["episode_length"], info["solved"], info["edits"], info["refused_edits"],
            info["idle_edits"]) == (4, 0.0, 4, 1, 3)

    slots = gym_env(crafted(replicas=4, target=4))
    slots.reset(seed=0, options={"scenario": 0})
    assert slots.step(NOOP)[2]  # healthy at once: terminated by the first step
    full = SimArenaGymEnv(traces=[crafted(replicas=3, target=3, background=(4, "100m", "100Mi"))],
                          replay={"max_pods_per_node": 1})
    obs, info = full.reset(seed=0)
    assert info["pending"] == 3 and obs[OBS_NO_SLOT] == 1.0


def test_gym_env_passes_the_checker_and_is_registered():
    env = SimArenaGymEnv(traces=[item.trace for item in generate_traces(8)], render_mode="ansi")
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    assert env.render().startswith("SimArena trace-") and "target" in env.render()
    with pytest.raises(InvalidActionError):
        env.step(NUM_ACTIONS)
    assert GYM_ID in gymnasium.registry


def random_kernel_inputs(rng, nodes):
    cap_cpu, cap_mem = 16000, 32 * GIB
    bg_cpu = rng.integers(0, cap_cpu + 1, nodes) * rng.integers(0, 2, nodes)
    bg_mem = rng.integers(0, cap_mem + 1, nodes) * rng.integers(0, 2, nodes)
    pods = rng.integers(0, 4, nodes)
    return (bg_cpu, bg_mem, bg_cpu + 100 * pods, bg_mem + 200 * MIB * pods, pods, cap_cpu, cap_mem,
            int(rng.integers(1, 6)), bool(rng.integers(0, 2)),
            int(rng.choice([0, 50, 500, 4000, 9000])), int(rng.choice([0, 64 * MIB, GIB, 20 * GIB])),
            int(rng.integers(0, 12)))


def test_numpy_reference_and_numba_placement_agree():
    rng = np.random.default_rng(5)
    placements = set()
    for _ in range(400):
        nodes = int(rng.integers(1, 9))
        args = random_kernel_inputs(rng, nodes)
        args = tuple(np.ascontiguousarray(a, dtype=np.int64) if isinstance(a, np.ndarray) else a for a in args)
        blocked_ref, blocked_nb = np.zeros(3, dtype=np.int64), np.ones(3, dtype=np.int64)
        placed = kernel.place_reference(*args, blocked_ref)
        work = [np.zeros(nodes, dtype=np.int64) for _ in range(5)]
        assert kernel.place_nb(*args, *work, blocked_nb) == placed
        np.testing.assert_array_equal(blocked_ref, blocked_nb)
        placements.add((placed == args[-1], bool(blocked_ref.any())))
    assert placements == {(True, False), (False, True)}  # both outcomes were exercised


@pytest.mark.parametrize("reward,sampling", [("shaped", "random"), ("cost_aware", "cycle"),
                                             ("max_punish", "random"), ("base", "cycle")])
def test_numpy_reference_and_numba_trajectories_are_bit_identical(reward, sampling):
    scenarios = load_scenarios(None, SimArenaSettings(count=24))
    settings = {"reward": reward, "sampling": sampling, "max_steps": 12, "count": 24}
    # The threaded kernel in one case (compiling it takes a while), the serial one otherwise.
    fast = SimArenaEnv(num_envs=40, seed=3, scenarios=scenarios, simarena=settings, log_interval=2**62,
                       parallel=reward == "shaped")
    ref = SimArenaEnv(num_envs=40, seed=3, scenarios=scenarios, simarena=settings)
    fast.reset()
    ref.state.grid_seed[:] = fast.state.grid_seed
    kernel.reset_reference(ref.params, ref.state, ref.kernel_scenarios, ref.observations)
    rng = np.random.default_rng(1)
    for step in range(150):
        actions = heuristic_actions(fast.observations) if step % 3 else \
            rng.integers(-1, NUM_ACTIONS + 1, 40).astype(np.int32)
        fast.step(actions)
        kernel.step_reference(ref.params, ref.state, ref.kernel_scenarios, actions, ref.observations,
                              ref.rewards, ref.terminals, ref.truncations, True)
        for name in ("observations", "rewards", "terminals", "truncations"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    for name, value in fast.state._asdict().items():
        if not name.startswith("work_"):  # the kernel's scratch space
            np.testing.assert_array_equal(value, getattr(ref.state, name), err_msg=name)
    assert fast.state.finished_count.sum() > 40


def target_counts(trace, settings, replay):
    """(ready, pending) of default/web by replaying the whole (edited) trace."""
    timeline = compile_timeline(trace, height=1, width=settings.nodes,
                                max_steps=observe_steps(settings, replay), settings=replay)
    t = timeline.horizon * timeline.step_seconds
    web = [pod for pod in timeline.pods if pod.owner.endswith(" default/web")
           and pod.created <= t and (pod.ended is None or pod.ended > t)]
    ready = sum(pod.running_at(t) for pod in web)
    return ready, len(web) - ready


@pytest.mark.parametrize("scheduler", ["least-allocated", "first-fit"])
def test_env_counts_equal_replaying_the_edited_trace(scheduler):
    """Each step's edit, done on the trace by `traces.ops` and replayed by `compile_timeline`,
    gives the pod counts and requests the env's arrays give."""
    settings, replay = SimArenaSettings(nodes=3), simarena_replay(ReplaySettings(scheduler=scheduler))
    rng = np.random.default_rng(11)
    checked = set()
    for index, name in enumerate(SCENARIOS * 2):
        item = generate_trace(name, seed=4, index=index)
        env = SimArenaGymEnv(traces=[item.trace], simarena={"nodes": 3, "max_steps": 1000},
                             replay={"scheduler": scheduler})
        trace = item.trace
        _, info = env.reset(seed=0)
        assert (info["ready"], info["pending"]) == target_counts(trace, settings, replay)
        for _ in range(12):
            action = int(rng.choice([NOOP, BUMP_CPU, BUMP_MEM, SCALE_UP, REDUCE_CPU, REDUCE_MEM,
                                     SCALE_DOWN, REDUCE_CPU, REDUCE_MEM]))
            if action != NOOP:
                try:
                    apply_op(trace, OPS[action], "web", step=settings.steps()[OPS[action]],
                             safeguards=settings.safeguards())
                except SafeguardError:
                    pass
            _, _, terminated, _, info = env.step(action)
            resources = deployment_resources(trace, "web")
            state = env.state
            assert (int(state.cpu[0]), int(state.mem[0]), int(state.replicas[0])) == \
                (resources.cpu_millicores, resources.memory_bytes, resources.replicas)
            counts = target_counts(trace, settings, replay)
            assert (info["ready"], info["pending"]) == counts
            checked.add(counts[1] > 0)
            if terminated:
                break
    assert checked == {True, False}


def test_same_seeds_give_the_same_trajectories_and_the_gym_env_matches_the_batched_one():
    scenarios = load_scenarios(None, SimArenaSettings(count=16))

    def run(seed, steps=120):
        env = SimArenaEnv(num_envs=8, seed=seed, scenarios=scenarios, simarena={"count": 16})
        env.reset()
        policy_out = np.zeros(8, dtype=np.int32)
        trajectory = []
        for step in range(steps):
            actions = random_actions(seed, step, policy_out).copy()
            obs, rewards, terminals, truncations, _ = env.step(actions)
            trajectory.append((obs.copy(), rewards.copy(), terminals.copy(), truncations.copy()))
        return trajectory, env.state.scenario.copy()

    (a, sa), (b, sb), (c, _) = run(1), run(1), run(2)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    np.testing.assert_array_equal(sa, sb)

    batched = SimArenaEnv(num_envs=1, seed=9, scenarios=scenarios, simarena={"count": 16})
    gym = SimArenaGymEnv(scenarios=scenarios, simarena={"count": 16})
    obs_b, _ = batched.reset()
    obs_g, _ = gym.reset(seed=9)
    for step in range(200):
        np.testing.assert_array_equal(obs_b[0], obs_g)
        action = int(random_actions(4, step, np.zeros(1, dtype=np.int32))[0])
        _, reward_b, term_b, trunc_b, _ = batched.step(np.array([action], dtype=np.int32))
        obs_g, reward_g, term_g, trunc_g, _ = gym.step(action)
        assert (reward_b[0], term_b[0], trunc_b[0]) == (np.float32(reward_g), term_g, trunc_g)
        if term_g or trunc_g:
            obs_g, _ = gym.reset()


def test_batched_env_infos_invalid_actions_and_vector_backends():
    import pufferlib.vector
    scenarios = load_scenarios(None, SimArenaSettings(count=8))
    env = SimArenaEnv(num_envs=16, log_interval=10, scenarios=scenarios,
                      simarena={"count": 8, "max_steps": 16})
    env.reset(seed=0)
    infos = []
    for _ in range(40):
        infos += env.step(np.full(16, 7))[4]  # out of range: a noop counted as invalid
    assert infos and set(infos[0]) == {*EPISODE_STATS, "n"}
    assert infos[0]["invalid_actions"] == 16 and infos[0]["solved"] == 0.0 and infos[0]["n"] == 16
    with pytest.raises(InvalidActionError):
        env.step(np.full(16, 0.5))
    with pytest.raises(InvalidActionError):
        env.step(np.zeros(3, dtype=np.int32))
    assert env.render().startswith("SimArena trace-")
    vec = pufferlib.vector.make(SimArenaEnv, backend=pufferlib.vector.Serial, num_envs=2,
                                env_kwargs={"num_envs": 4, "simarena": {"count": 8}}, seed=0)
    vec.async_reset(0)
    obs = vec.recv()[0]
    assert obs.shape == (8, OBS_SIZE)
    vec.send(np.zeros(8, dtype=np.int32))
    assert vec.recv()[0].shape == (8, OBS_SIZE)
    vec.close()


def test_heuristic_solves_every_demo_scenario_and_random_does_not():
    config = load_config(bundled_config_path("simarena.ini"), ["--simarena.count", "32"])
    rows = evaluate(["random", "heuristic", "noop"], 64, 0, config)
    random_row, heuristic_row, noop_row = rows
    assert heuristic_row["solved_rate"] == 1.0
    assert set(heuristic_row["solved_by_scenario"]) == set(SCENARIOS)
    assert noop_row["solved_rate"] == 0.0 and noop_row["steps_mean"] == 64
    assert random_row["solved_rate"] < 0.9
    assert heuristic_row["wins"] + heuristic_row["ties"] == 64 and heuristic_row["wins"] > 40
    table = format_simarena_table(rows)
    assert "SIMARENA RESULTS (random vs heuristic vs noop; reward shaped)" in table
    assert "Heuristic win-rate:" in table


def test_scenarios_from_files_directories_and_sim_arena_traces(tmp_path):
    write_traces(generate_traces(4, seed=2), tmp_path)
    (tmp_path / "notes.json").write_text('{"not": "a trace"}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scenarios = load_scenarios(tmp_path)
    assert [s.kind for s in scenarios] == list(SCENARIOS[:4])
    assert any("notes.json" in str(w.message) for w in caught)
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenarios(tmp_path / "missing")
    no_web = tmp_path / "other.msgpack"
    trace = crafted()
    trace.events[0].applied_objs[0]["metadata"]["name"] = "api"
    save_trace(trace, no_web)
    from puffer_cluster.simarena import ScenarioError
    with pytest.raises(ScenarioError, match="no Deployment 'web'"):
        compile_scenario(no_web)

    demo = DATA_DIR / "sim-arena" / "demo_trace-cpu-slight.msgpack"
    if not demo.is_file():
        pytest.skip(f"{demo} not found")
    scenario = compile_scenario(demo)
    assert (scenario.target, scenario.cpu, scenario.mem, scenario.replicas) == (3, 17000, 2 * GIB, 3)
    env = SimArenaGymEnv(traces=[demo])
    _, info = env.reset(seed=0)
    assert (info["ready"], info["pending"]) == (0, 3)
    assert env.step(REDUCE_CPU)[4]["ready"] == 0
    _, reward, terminated, _, info = env.step(REDUCE_CPU)  # 16000m: one pod per node
    assert terminated and info["ready"] == 3


def test_ppo_trains_on_the_simarena_config_and_the_eval_table_reports_it(tmp_path, capsys):
    config = load_config(bundled_config_path("simarena.ini"), [
        "--env.num-envs", "16", "--env.log-interval", "4", "--simarena.count", "8",
        "--train.num-steps", "8", "--train.total-timesteps", str(16 * 8 * 3),
        "--train.checkpoint-interval", "2", "--train.data-dir", str(tmp_path),
        "--train.torch-threads", "1", "--train.device", "cpu"])
    run_dir = train(config, quiet=True)
    assert run_dir.name.startswith("simarena__simarena__")
    final = load_checkpoint(run_dir / "final.pt")
    assert final["global_step"] == 16 * 8 * 3 and final["config"]["base"]["env_name"] == "simarena"
    assert (run_dir / "learning_curve.png").is_file()
    from puffer_cluster.trainers.models import make_policy
    model = make_policy(final["config"]["policy"], OBS_SIZE, NUM_ACTIONS)
    model.load_state_dict(final["model"])
    assert model.step(torch.zeros(2, OBS_SIZE), (), None)[0].shape == (2, NUM_ACTIONS)

    assert cli_main(["eval", "heuristic", str(run_dir / "final.pt"), "--config",
                     str(bundled_config_path("simarena.ini")), "--episodes", "8",
                     "--simarena.count", "8"]) == 0
    out = capsys.readouterr().out
    assert "SIMARENA RESULTS (heuristic vs" in out and "final.pt win-rate" in out
    assert cli_main(["eval", "heuristic", "clever", "--config", str(bundled_config_path("simarena.ini")),
                     "--episodes", "8", "--simarena.count", "8"]) == 2
    assert "unknown policy 'clever' for the simarena env" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="teacher"):
        train(load_config(bundled_config_path("simarena.ini"), ["--train.teacher", "heuristic",
                                                                "--train.data-dir", str(tmp_path)]),
              run_dir=tmp_path / "refused", quiet=True)
