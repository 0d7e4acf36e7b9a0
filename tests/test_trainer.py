"""The PPO trainer: loss pieces, GAE, resume, atomic checkpoints, the CLI, learning."""
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from puffer_cluster.cli import main as cli_main
from puffer_cluster.config import ConfigError, apply_overrides, bundled_config_path, load_config
from puffer_cluster.evaluate import play_episodes
from puffer_cluster.config import world_config
from puffer_cluster.policies import CheckpointPolicy
from puffer_cluster.trainers.checkpoint import CheckpointError, load_checkpoint, remove_partial_files, save_atomic
from puffer_cluster.trainers.ppo import (
    clipped_policy_loss, compute_gae, explained_variance, normalize_advantages, train, value_loss,
)


def tiny_config(tmp_path, *overrides):
    """A config small enough for a training run of a few seconds."""
    return load_config(None, [
        "--env.num-envs", "32", "--env.log-interval", "8", "--env.height", "6", "--env.width", "6",
        "--env.max-steps", "20",
        "--train.num-steps", "8", "--train.total-timesteps", str(32 * 8 * 6),
        "--train.checkpoint-interval", "2", "--train.data-dir", str(tmp_path),
        "--train.torch-threads", "1", "--train.device", "cpu", *overrides])


# --- Loss pieces against hand-computed values ---------------------------------------------------

def test_clipped_policy_loss_matches_hand_computation():
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.1])
    advantages = torch.tensor([1.0, -2.0, 1.0, -1.0])
    # per element: max(-A*r, -A*clip(r, 0.8, 1.2))
    # 0.5, A=1: max(-0.5, -0.8) = -0.5;  1.0, A=-2: max(2, 2) = 2
    # 1.5, A=1: max(-1.5, -1.2) = -1.2;  1.1, A=-1: max(1.1, 1.1) = 1.1
    expected = (-0.5 + 2.0 - 1.2 + 1.1) / 4
    assert clipped_policy_loss(ratio, advantages, 0.2).item() == pytest.approx(expected)


def test_value_loss_clipped_and_unclipped():
    new = torch.tensor([1.0, 3.0])
    returns = torch.tensor([2.0, 2.0])
    old = torch.tensor([0.0, 2.9])
    # unclipped: 0.5 * mean((1-2)^2, (3-2)^2) = 0.5
    assert value_loss(new, returns, old, 0.2, clip_vloss=False).item() == pytest.approx(0.5)
    # clipped values: 0 + clip(1, -.2, .2) = 0.2 -> (0.2-2)^2 = 3.24; 2.9 + 0.1 = 3.0 -> 1
    # max per element: max(1, 3.24) = 3.24, max(1, 1) = 1 -> 0.5 * mean = 1.06
    assert value_loss(new, returns, old, 0.2, clip_vloss=True).item() == pytest.approx(1.06)


def test_normalize_advantages_and_explained_variance():
    adv = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert adv.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert adv.std().item() == pytest.approx(1.0, abs=1e-6)
    target = np.array([1.0, 2.0, 3.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(np.zeros(3), target) == pytest.approx(0.0)
    assert math.isnan(explained_variance(target, np.ones(3)))


def reference_gae(rewards, values, starts, next_value, next_start, gamma, lam):
    """Advantages by the definition: sum over l of (gamma*lam)^l * delta_{t+l}, cut at episode ends."""
    steps, agents = rewards.shape
    values_ext = np.vstack([values, next_value[None]])
    starts_ext = np.vstack([starts, next_start[None]])
    advantages = np.zeros_like(rewards)
    for n in range(agents):
        for t in range(steps):
            total, discount = 0.0, 1.0
            for k in range(t, steps):
                alive = 1.0 - starts_ext[k + 1, n]
                delta = rewards[k, n] + gamma * values_ext[k + 1, n] * alive - values_ext[k, n]
                total += discount * delta
                discount *= gamma * lam * alive
                if alive == 0.0:
                    break
            advantages[t, n] = total
    return advantages


def test_gae_matches_straightforward_reference():
    generator = np.random.default_rng(3)
    rewards = generator.normal(size=(7, 4))
    values = generator.normal(size=(7, 4))
    starts = generator.random((7, 4)) < 0.25
    next_value = generator.normal(size=4)
    next_start = np.array([True, False, False, True])
    advantages, returns = compute_gae(
        torch.tensor(rewards), torch.tensor(values), torch.tensor(starts),
        torch.tensor(next_value), torch.tensor(next_start), 0.9, 0.8)
    expected = reference_gae(rewards, values, starts.astype(float), next_value,
                             next_start.astype(float), 0.9, 0.8)
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(returns.numpy(), expected + values, rtol=1e-12, atol=1e-12)


# --- Runs, resume, checkpoints ------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["mlp", "lstm"])
def test_resume_equals_uninterrupted(tmp_path, policy):
    config = tiny_config(tmp_path, "--policy.name", policy)
    full = train(config, run_dir=tmp_path / "full", quiet=True)
    train(config, run_dir=tmp_path / "split", quiet=True, should_stop=lambda it: it == 3)
    interrupted = load_checkpoint(tmp_path / "split" / "latest.pt", require_training_state=True)
    assert interrupted["iteration"] == 3
    assert not (tmp_path / "split" / "final.pt").exists()
    train(config, resume=str(tmp_path / "split" / "latest.pt"), quiet=True)

    a = load_checkpoint(full / "final.pt")
    b = load_checkpoint(tmp_path / "split" / "final.pt")
    assert a["global_step"] == b["global_step"] == 32 * 8 * 6
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    # And the run actually learned something: weights moved from their initialisation.
    first = load_checkpoint(tmp_path / "split" / "model_000002.pt")
    assert any(not torch.equal(first["model"][k], a["model"][k]) for k in a["model"])


def test_run_directory_contents(tmp_path):
    run_dir = train(tiny_config(tmp_path), quiet=True)
    assert run_dir.parent == tmp_path and run_dir.name.startswith("gardener__ppo__1__")
    for name in ("config.ini", "command.txt", "final.pt", "latest.pt", "best.pt",
                 "learning_curve.png"):
        assert (run_dir / name).is_file(), name
    assert load_config(run_dir / "config.ini") == tiny_config(tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("charts/episodic_return", "charts/episodic_length", "charts/SPS",
                "charts/learning_rate", "losses/value_loss", "losses/policy_loss",
                "losses/entropy", "losses/old_approx_kl", "losses/approx_kl", "losses/clipfrac",
                "losses/explained_variance", "environment/oom_rate", "environment/crit_rate",
                "eval/episodic_return", "eval/heuristic_return", "losses/teacher_loss",
                "charts/teacher_coef"):
        assert tag in tags, tag
    # The final checkpoint is small enough to ship; latest.pt also carries the training state.
    assert (run_dir / "final.pt").stat().st_size < 1_000_000
    assert "training" not in load_checkpoint(run_dir / "final.pt")
    with pytest.raises(CheckpointError, match="policy only"):
        load_checkpoint(run_dir / "final.pt", require_training_state=True)


def test_checkpoint_failing_mid_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_atomic({"format": "puffer-cluster", "value": 1}, path)

    def broken_save(payload, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"format": "puffer-cluster", "value": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["value"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_checkpoint_killed_mid_write_keeps_previous(tmp_path):
    """A process killed (no cleanup at all) while writing leaves the old checkpoint loadable."""
    path = tmp_path / "latest.pt"
    save_atomic({"format": "puffer-cluster", "value": 1}, path)
    script = textwrap.dedent(f"""
        import os, torch
        from puffer_cluster.trainers.checkpoint import save_atomic
        def dying_save(payload, f):
            f.write(b"x" * 4096)
            f.flush()
            os._exit(9)
        torch.save = dying_save
        save_atomic({{"format": "puffer-cluster", "value": 2}}, {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == 9
    assert load_checkpoint(path)["value"] == 1
    # What the kill left behind is the temporary file `--resume` clears (remove_partial_files).
    (partial,) = tmp_path.glob(".latest.pt.*.partial")
    assert remove_partial_files(tmp_path) == [partial]
    assert list(tmp_path.iterdir()) == [path]


def test_load_checkpoint_rejects_other_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a puffer-cluster checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_train_cli_rejects_unknown_keys(capsys):
    assert cli_main(["train", "--train.bogus-key", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'bogus_key' in [train]" in err and "total_timesteps" in err
    assert cli_main(["train", "--train.total-timesteps", "lots"]) == 2
    assert "expected int" in capsys.readouterr().err


def test_apply_overrides_types_values():
    config = apply_overrides(load_config(), ["--train.total-timesteps", "5e6", "--policy.name", "lstm"])
    assert config["train"]["total_timesteps"] == 5_000_000
    assert config["policy"]["name"] == "lstm"
    with pytest.raises(ConfigError, match="valid keys"):
        apply_overrides(load_config(), ["--policy.layers", "3"])


def test_quick_config_is_a_strict_override():
    quick = load_config(bundled_config_path("quick.ini"))
    assert quick["train"]["name"] == "quick"
    assert quick["train"]["total_timesteps"] < load_config()["train"]["total_timesteps"]


def test_short_training_improves_on_its_start(tmp_path):
    """A short run on quick.ini's settings, on 8x8 grids, plays better than its untrained start
    on fixed seeds."""
    config = load_config(bundled_config_path("quick.ini"), [
        "--env.height", "8", "--env.width", "8",
        "--train.total-timesteps", "1.5e6", "--train.data-dir", str(tmp_path),
        "--train.checkpoint-interval", "1", "--train.torch-threads", "1", "--train.device", "cpu"])
    run_dir = train(config, quiet=True)
    env = world_config(config)

    def mean_return(checkpoint):
        stats = play_episodes(lambda n, p: CheckpointPolicy(str(checkpoint), n, config), 64, 123, env)
        return stats[:, 0].mean()

    start, end = mean_return(run_dir / "model_000001.pt"), mean_return(run_dir / "final.pt")
    assert end > start + 5.0, (start, end)


def test_behaviour_cloning_phase_imitates_the_teacher(tmp_path):
    """With the whole run in the cloning phase, the policy comes to act like the heuristic."""
    config = tiny_config(tmp_path, "--train.teacher-clone-fraction", "1.0",
                         "--train.total-timesteps", str(32 * 8 * 40), "--train.update-epochs", "4",
                         "--train.num-minibatches", "4")
    run_dir = train(config, quiet=True)
    from puffer_cluster.env import GardenerEnv
    from puffer_cluster.policies import HeuristicPolicy
    env = GardenerEnv(num_envs=256, seed=99, **world_config(config))
    teacher = HeuristicPolicy(256, env.params, config["heuristic"])
    student = CheckpointPolicy(str(run_dir / "final.pt"), 256, config)
    untrained = CheckpointPolicy(str(run_dir / "model_000002.pt"), 256, config)
    obs, _ = env.reset()
    start = np.ones(256, dtype=bool)
    agree, agree_before = [], []
    for _ in range(40):
        target = teacher(obs, start).copy()
        agree.append(np.mean(student(obs, start) == target))
        agree_before.append(np.mean(untrained(obs, start) == target))
        obs, _, terminals, truncations, _ = env.step(target)
        start = terminals | truncations
    assert np.mean(agree) > 0.8, np.mean(agree)
    assert np.mean(agree) > np.mean(agree_before) + 0.1


def test_saved_checkpoint_has_a_normal_file_mode(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        path = save_atomic({"format": "puffer-cluster"}, tmp_path / "model.pt")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


# --- Held-out evaluation, its heuristic reference, SimArena ------------------------------------

def test_heuristic_reference_is_the_heuristic_on_the_held_out_seeds(tmp_path):
    config = tiny_config(tmp_path, "--train.eval-interval", "2", "--train.eval-episodes", "8")
    run_dir = train(config, quiet=True)
    training = load_checkpoint(run_dir / "latest.pt", require_training_state=True)["training"]
    from puffer_cluster.policies import HeuristicPolicy
    stats = play_episodes(lambda n, params: HeuristicPolicy(n, params, config["heuristic"]),
                          8, config["train"]["eval_seed"], world_config(config))
    assert training["heuristic_return"] == pytest.approx(stats[:, 0].mean())
    # One held-out point every 2 updates, and the curve's history of the training episodes.
    assert [step for step, _ in training["eval_history"]] == [32 * 8 * i for i in (2, 4, 6)]
    assert max(r for _, r in training["eval_history"]) == training["best_eval_return"]
    assert len(training["history"]) >= 1 and (run_dir / "learning_curve.png").stat().st_size > 0


def simarena_config(tmp_path, *overrides):
    return load_config(bundled_config_path("simarena.ini"), [
        "--env.num-envs", "16", "--env.log-interval", "4", "--simarena.count", "8",
        "--train.num-steps", "8", "--train.total-timesteps", str(16 * 8 * 6),
        "--train.checkpoint-interval", "2", "--train.eval-interval", "2",
        "--train.eval-episodes", "8", "--eval.episodes", "8", "--train.data-dir", str(tmp_path),
        "--train.torch-threads", "1", "--train.device", "cpu", *overrides])


def test_simarena_held_out_scenarios_are_not_the_eval_tables(tmp_path):
    from puffer_cluster.replay import replay_settings
    from puffer_cluster.simarena import heldout_scenarios, load_scenarios, simarena_settings
    config = simarena_config(tmp_path)
    table = load_scenarios(None, simarena_settings(config), replay_settings(config["replay"]))

    def content(s):
        return (s.kind, s.cpu, s.mem, s.replicas, s.target, s.bg_cpu.tobytes(),
                s.bg_mem.tobytes(), s.bg_pods.tobytes())

    held_out = heldout_scenarios(config)
    assert len(held_out) == 8
    assert not {content(s) for s in held_out} & {content(s) for s in table}
    with pytest.raises(ConfigError, match="eval_seed"):
        heldout_scenarios(apply_overrides(config, ["--train.eval-seed", "0"]))


def test_simarena_training_selects_best_and_resumes_exactly(tmp_path):
    """Held-out greedy evaluation and best.pt as for the gardener; a resumed run restores the
    SimArena envs, so it ends bit for bit where an uninterrupted one does. (About 15 s: three
    short runs, and SimArena's kernels load.)"""
    config = simarena_config(tmp_path)
    full = train(config, run_dir=tmp_path / "full", quiet=True)
    assert (full / "best.pt").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(full))
    events.Reload()
    assert {"eval/episodic_return", "eval/heuristic_return"} <= set(events.Tags()["scalars"])

    train(config, run_dir=tmp_path / "split", quiet=True, should_stop=lambda it: it == 3)
    train(config, resume=str(tmp_path / "split" / "latest.pt"), quiet=True)
    a, b = (load_checkpoint(d / "latest.pt", require_training_state=True)
            for d in (full, tmp_path / "split"))
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["training"]["eval_history"] == b["training"]["eval_history"]
    assert a["training"]["history"] == b["training"]["history"]
