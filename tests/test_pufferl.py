"""`puffer-cluster train --train.trainer pufferl`: PufferLib's own PuffeRL from our CLI.

Importing pufferlib.pufferl changes the whole process (warnings, Ctrl-C), so whatever imports it
runs in a subprocess; the refusals are checked in process, before anything is imported."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_run_ini
from puffer_cluster.kernels.world import NUM_ACTIONS, OBS_SIZE
from puffer_cluster.cli import main as cli_main
from puffer_cluster.config import ConfigError, load_config
from puffer_cluster.trainers.checkpoint import load_checkpoint, load_policy_model
from puffer_cluster.trainers.pufferl import check_pufferl_config

REPO = Path(__file__).resolve().parents[1]

# Four updates of 32 grids of 6x6 x 8 steps, in segments of 8 steps, 4 minibatches. Episodes
# of 6 steps and statistics every 2 steps: every update sees episodes end, so whichever updates
# PuffeRL logs (it logs at most every 0.25 s, and the last one) show episode returns.
TINY_INI = tiny_run_ini(
    env=dict(log_interval=2, max_steps=6),
    train=dict(trainer="pufferl", teacher="none", num_minibatches=4, total_timesteps=1024,
               checkpoint_interval=2, eval_interval=2),
    pufferl=dict(bptt_horizon=8),
)


def run_child(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("WORLD_SIZE", None)
    env.pop("LOCAL_RANK", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_pufferl_trains_a_policy_our_eval_plays(tmp_path, tiny_ini, capsys):
    """About 15 s: a fresh interpreter imports torch and pufferlib and loads the kernels before
    its 4 updates, then plays the closing benchmark table."""
    data_dir = tmp_path / "runs"
    child = run_child(["-m", "puffer_cluster.cli", "train", "--config", str(tiny_ini),
                       "--train.data-dir", str(data_dir)], tmp_path)
    assert child.returncode == 0, child.stderr
    assert "BENCHMARK RESULTS" in child.stdout  # train's closing table plays final.pt
    (run_dir,) = data_dir.iterdir()
    assert run_dir.name.startswith("gardener__pufferl__1__")
    assert {"config.ini", "command.txt", "final.pt", "best.pt", "learning_curve.png"} \
        <= {path.name for path in run_dir.iterdir()}
    assert (run_dir / "pufferl" / "trainer_state.pt").is_file()  # PuffeRL's own checkpoint

    final = load_checkpoint(run_dir / "final.pt", require_policy=True)
    assert (final["global_step"], final["iteration"]) == (1024, 4)
    assert final["config"]["train"]["trainer"] == "pufferl"
    assert final["config"]["policy"]["critic"] == "plain" and final["critic_extra"] == 0
    load_policy_model(run_dir / "final.pt", OBS_SIZE, NUM_ACTIONS, "gardener")

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir)).Reload()
    assert {"losses/policy_loss", "charts/episodic_return", "eval/episodic_return"} \
        <= set(events.Tags()["scalars"])

    assert cli_main(["eval", "heuristic", str(run_dir / "final.pt"), "--episodes", "4"]) == 0
    assert "final.pt win-rate" in capsys.readouterr().out


def test_importing_pufferl_leaves_the_process_as_it_was(tmp_path):
    code = (
        "import signal, sys, warnings\n"
        "from trainers.pufferl import import_pufferl\n"
        "sigint, hook = signal.getsignal(signal.SIGINT), sys.excepthook\n"
        "import_pufferl()\n"
        "assert 'pufferlib.pufferl' in sys.modules\n"
        "assert signal.getsignal(signal.SIGINT) is sigint, 'Ctrl-C handler replaced'\n"
        "assert sys.excepthook is hook, 'excepthook replaced'\n"
        "warnings.warn('still a warning', RuntimeWarning)\n"
        "print('unchanged')\n")
    child = run_child(["-c", code], tmp_path)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "unchanged"


@pytest.mark.parametrize("overrides, message", [
    (["--train.teacher", "heuristic"], "train.teacher must be none with train.trainer pufferl"),
    (["--policy.name", "lstm"], "policy.name must be mlp with train.trainer pufferl"),
    (["--pufferl.bptt-horizon", "3"], "pufferl.bptt_horizon must divide train.num_steps (8)"),
    (["--train.num-minibatches", "64"], "must be a multiple of pufferl.bptt_horizon (8)"),
    (["--pufferl.max-minibatch-size", "12"], "pufferl.max_minibatch_size must be a multiple"),
    (["--pufferl.optimizer", "sgd"], "[pufferl] optimizer must be one of adam, muon"),
    (["--train.trainer", "sarsa"], "train.trainer must be one of ppo, pufferl, dqn, eps_greedy, got 'sarsa'"),
])
def test_what_pufferl_cannot_run_is_refused_in_one_line(tmp_path, tiny_ini, capsys, overrides,
                                                        message):
    data_dir = tmp_path / "runs"
    assert cli_main(["train", "--config", str(tiny_ini), "--train.data-dir", str(data_dir),
                     *overrides]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not data_dir.exists()
    assert "pufferlib.pufferl" not in sys.modules


def test_torchrun_on_cpu_is_refused(tiny_ini, monkeypatch):
    config = load_config(tiny_ini)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="under torchrun on CPU.*nccl, which needs CUDA"):
        check_pufferl_config(config, None)


def test_resume_is_refused(tiny_ini):
    with pytest.raises(ConfigError, match="--resume continues our ppo runs only"):
        check_pufferl_config(load_config(tiny_ini), "runs/x/latest.pt")
