"""`puffer-cluster train` as a user meets it: a terminal, bad input, signals, bad checkpoints,
and the benchmark table it ends with."""
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_ini
from puffer_cluster.kernels.simarena import NUM_ACTIONS as SIMARENA_ACTIONS, OBS_SIZE as SIMARENA_OBS
from puffer_cluster.kernels.world import NUM_ACTIONS, OBS_SIZE
from puffer_cluster.cli import main as cli_main
from puffer_cluster.config import load_config
from puffer_cluster.trainers.checkpoint import CheckpointError, load_checkpoint, save_atomic
from puffer_cluster.trainers.models import make_policy
from puffer_cluster.trainers.ppo import train
from puffer_cluster.trainers.training_state import policy_payload

REPO = Path(__file__).resolve().parents[1]

# A run of a few seconds: 32 grids of 6x6, 12 updates of 8 steps (the first one cloning).
TINY_INI = tiny_run_ini(env=dict(log_interval=8, max_steps=20),
                        train=dict(total_timesteps=3072, checkpoint_interval=4, eval_interval=4))


def child_env() -> dict:
    """The environment of a `python -m puffer_cluster.cli` child importing this checkout."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def cli_command(*args) -> list[str]:
    return [sys.executable, "-m", "puffer_cluster.cli", *args]


def only_run_dir(data_dir: Path) -> Path:
    (run_dir,) = data_dir.iterdir()
    return run_dir


# --- A real terminal ------------------------------------------------------------------------

def test_train_runs_to_the_end_in_a_terminal(tmp_path, tiny_ini):
    """Under a pseudo-terminal the live view is used: it must not crash before the first
    update, and it shows the run directory and the phase."""
    data_dir = tmp_path / "runs"
    pid, master = pty.fork()
    if pid == 0:  # the child: stdout, stderr and stdin are the terminal
        os.chdir(tmp_path)
        env = child_env()
        os.execve(sys.executable, cli_command("train", "--config", str(tiny_ini),
                                              "--train.data-dir", str(data_dir)), env)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))  # no styles
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]
    run_dir = only_run_dir(data_dir)
    assert (run_dir / "final.pt").is_file()
    assert "run directory" in text and run_dir.name in text
    # The first frame is drawn before the first update ends: update 0, phase and directory shown.
    first_frame = text[:text.index("\u2514")]  # up to the first table's bottom border
    assert re.search(r"update\s+\S\s+0 / 12", first_frame), first_frame
    assert "cloning" in first_frame and run_dir.name in first_frame
    assert "cloning" in text and "PPO" in text
    assert "teacher weight" in text and "held-out return" in text
    assert "BENCHMARK RESULTS (heuristic vs" in text
    assert "Traceback" not in text


def test_dashboard_shows_the_run_before_the_first_update(tmp_path):
    import io

    from rich.console import Console

    from puffer_cluster.trainers.dashboard import Dashboard
    config = load_config(None, ["--train.eval-interval", "5"])
    view = Dashboard(config, num_iterations=10, batch_size=100, run_dir=tmp_path / "run",
                     cloning_iterations=2)
    screen = io.StringIO()
    Console(file=screen, width=200).print(view._render())
    for text in (screen.getvalue(), view._line()):  # the ETA is unknown yet: no crash
        assert "cloning" in text and "every 5 updates" in text
    assert str(tmp_path / "run") in screen.getvalue()
    view.update(3, 300, {"charts/teacher_coef": 0.5})
    view.record_eval(12.5, 20.0, 30.0)
    assert "phase PPO" in view._line() and "+12.50 / best +20.00 (heuristic +30.00)" in view._line()
    assert "teacher 0.500" in view._line()


# --- Bad input: one line, exit 2, no run directory --------------------------------------------

BAD_INPUT = [  # (arguments, the key the message names, the valid range it states)
    (["--train.num-minibatches", "0"], "train.num_minibatches", "within 1 .. 65536"),
    (["--train.num-minibatches", "65537"], "train.num_minibatches", "within 1 .. 65536"),
    (["--train.num-steps", "0"], "train.num_steps", "at least 1"),
    (["--train.checkpoint-interval", "0"], "train.checkpoint_interval", "at least 1"),
    (["--train.update-epochs", "0"], "train.update_epochs", "at least 1"),
    (["--policy.hidden-size", "0"], "policy.hidden_size", "at least 1"),
    (["--policy.hidden-size", "-8"], "policy.hidden_size", "at least 1"),
    (["--policy.name", "transformer"], "policy.name", "mlp, lstm"),
    (["--train.device", "tpu"], "train.device", "auto, cpu, cuda or cuda:N"),
    (["--train.learning-rate", "1e999"], "train.learning_rate", "finite number > 0"),
    (["--train.learning-rate", "0"], "train.learning_rate", "finite number > 0"),
    (["--train.learning-rate", "-1e-3"], "train.learning_rate", "finite number > 0"),
    (["--train.learning-rate", "nan"], "train.learning_rate", "expected float"),
    (["--train.collective-timeout", "0"], "train.collective_timeout", "positive number of seconds"),
    (["--train.total-timesteps", "1000"], "train.total_timesteps", "at least one batch (65,536"),
    (["--config", "/bin/ls"], "/bin/ls", "not a text config file"),
    (["--config", "SECTIONLESS"], "sectionless.ini", "before any [section] header"),
    (["--vec.backend", "Multiprocessing", "--vec.num-envs", "3", "--vec.num-workers", "2"],
     "vec.num_workers", "must divide vec.num_envs (3)"),
    (["--vec.backend", "Threads"], "vec.backend", "PufferEnv, Serial, Multiprocessing"),
    (["--eval.episodes", "0"], "eval.episodes", "at least 1"),
]


@pytest.mark.parametrize("args, key, valid", BAD_INPUT, ids=[" ".join(c[0]) for c in BAD_INPUT])
def test_bad_train_input_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, args, key, valid):
    sectionless = tmp_path / "sectionless.ini"
    sectionless.write_text("total_timesteps = 1\n")
    args = [str(sectionless) if a == "SECTIONLESS" else a for a in args]
    data_dir = tmp_path / "runs"
    config_args = args[:2] if args[0] == "--config" else []
    overrides = args[2:] if config_args else args
    assert cli_main(["train", *config_args, "--train.data-dir", str(data_dir), *overrides]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("error: "), err
    assert key in err and valid in err, err
    assert not data_dir.exists() or not any(data_dir.iterdir())
    assert captured.out == ""


def test_train_function_checks_the_config_before_creating_anything(tmp_path):
    from puffer_cluster.config import ConfigError
    config = load_config(None, ["--train.data-dir", str(tmp_path / "runs"),
                                "--train.update-epochs", "0"])
    with pytest.raises(ConfigError, match="train.update_epochs"):
        train(config, quiet=True)
    assert not (tmp_path / "runs").exists()


# --- Checkpoints refused with one line ----------------------------------------------------------

def policy_file(path: Path, env_name: str = "gardener", poison: bool = False, config=True) -> Path:
    config_ = load_config(None, ["--base.env-name", env_name])
    obs, actions = (OBS_SIZE, NUM_ACTIONS) if env_name == "gardener" else (SIMARENA_OBS,
                                                                          SIMARENA_ACTIONS)
    payload = policy_payload(make_policy(config_["policy"], obs, actions), config_, 0, 0)
    if poison:
        next(iter(payload["model"].values()))[0] = float("nan")
    if not config:
        del payload["config"]
    return save_atomic(payload, path)


@pytest.mark.parametrize("make, message", [
    (lambda p: policy_file(p, config=False), "has no config"),
    (lambda p: policy_file(p, poison=True), "non-finite weights"),
    (lambda p: policy_file(p, env_name="simarena"), "does not fit the gardener env"),
], ids=["no config", "NaN weights", "SimArena checkpoint"])
def test_eval_refuses_unusable_checkpoints(tmp_path, capsys, make, message):
    path = make(tmp_path / "final.pt")
    assert cli_main(["eval", "heuristic", str(path), "--episodes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and str(path) in err, err


def test_a_gardener_checkpoint_fits_and_a_missing_one_does_not_exist(tmp_path, capsys):
    from puffer_cluster.trainers.checkpoint import load_policy_model
    model = load_policy_model(policy_file(tmp_path / "ok.pt"), OBS_SIZE, NUM_ACTIONS, "gardener")
    assert model.step(torch.zeros(1, OBS_SIZE), (), None)[0].shape == (1, NUM_ACTIONS)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    assert cli_main(["train", "--resume", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- Resume: partial files, command.txt, the closing table -----------------------------------

def test_resume_clears_killed_saves_appends_the_command_and_ends_with_the_table(
        tmp_path, tiny_ini, capsys):
    config = load_config(tiny_ini, ["--train.data-dir", str(tmp_path / "runs")])
    run_dir = train(config, quiet=True, should_stop=lambda iteration: iteration == 4)
    leftovers = [run_dir / ".latest.pt.k9x2ab.partial", run_dir / ".best.pt.q1w2e3.partial"]
    for path in leftovers:
        path.write_bytes(b"half a checkpoint")
    latest = load_checkpoint(run_dir / "latest.pt")  # as written before [eval] seed existed
    del latest["config"]["eval"]["seed"]
    save_atomic(latest, run_dir / "latest.pt")
    assert cli_main(["train", "--resume", str(run_dir / "latest.pt"), "--eval.episodes", "6"]) == 0
    out = capsys.readouterr().out
    assert not any(path.exists() for path in leftovers)
    assert not list(run_dir.glob("*.partial")) and not list(run_dir.glob(".*.partial"))
    assert len((run_dir / "command.txt").read_text().splitlines()) == 2
    assert "BENCHMARK RESULTS (heuristic vs" in out and f"{run_dir}/final.pt win-rate: " in out
    assert "benchmark's 6 episodes from seed 0" in out
    assert out.rstrip().endswith(f"run directory: {run_dir}")


# --- Signals ------------------------------------------------------------------------------------

def test_sigterm_saves_latest_and_prints_the_resume_command(tmp_path, tiny_ini):
    """SIGTERM (a scheduler's stop) is a first Ctrl-C: finish the update, save, say how to resume."""
    data_dir = tmp_path / "runs"
    child = subprocess.Popen(
        cli_command("train", "--config", str(tiny_ini), "--train.data-dir", str(data_dir),
                    "--train.total-timesteps", str(32 * 8 * 10_000), "--train.checkpoint-interval",
                    "1000"),
        cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in child.stdout:
        lines.append(line)
        if "update 1/" in line:
            child.send_signal(signal.SIGTERM)
            break
    rest, _ = child.communicate(timeout=120)
    output = "".join(lines) + rest
    assert child.returncode == 128 + signal.SIGTERM, output
    run_dir = only_run_dir(data_dir)
    latest = run_dir / "latest.pt"
    stopped_at = load_checkpoint(latest, require_training_state=True)["iteration"]
    assert 1 <= stopped_at < 10_000
    assert f"resume with: puffer-cluster train --resume {latest}" in output
    assert "Traceback" not in output and not (run_dir / "final.pt").exists()
    # Piped, the progress lines say where the run goes, its phase and the held-out returns.
    assert f"[ppo] run directory: {run_dir} | phase cloning" in output
    assert "update 1/10000 | phase cloning" in output and "held-out - (every 4 updates)" in output


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_latest(tmp_path, tiny_ini, capsys,
                                                                     monkeypatch):
    """Two Ctrl-C during update 3: no traceback, exit 130, latest.pt of update 2 still loads."""
    from puffer_cluster.trainers import dashboard
    update = dashboard.Dashboard.update

    def update_then_ctrl_c_twice(self, iteration, global_step, scalars):
        update(self, iteration, global_step, scalars)
        if iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises as soon as the signal is delivered

    monkeypatch.setattr(dashboard.Dashboard, "update", update_then_ctrl_c_twice)
    handler_before = signal.getsignal(signal.SIGINT)
    data_dir = tmp_path / "runs"
    rc = cli_main(["train", "--config", str(tiny_ini), "--train.data-dir", str(data_dir),
                   "--train.checkpoint-interval", "1"])
    out = capsys.readouterr().out
    assert rc == 130, out
    run_dir = only_run_dir(data_dir)
    assert load_checkpoint(run_dir / "latest.pt", require_training_state=True)["iteration"] == 2
    assert "stopped at once by a second Ctrl-C" in out
    assert f"resume with: puffer-cluster train --resume {run_dir / 'latest.pt'}" in out
    assert not list(run_dir.glob(".*.partial"))
    assert signal.getsignal(signal.SIGINT) is handler_before  # the trainer's handler is gone
