"""What a newcomer meets: a quiet start, help that helps, configs and checkpoints by name from any
directory, one-line errors, the recorder, the compile notice."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from puffer_cluster.kernels import event
from puffer_cluster.kernels.jit_cache import MESSAGE, is_cold
from puffer_cluster.cli import main
from puffer_cluster.config import ConfigError, bundled_config_path, load_config, resolve_config_path
from puffer_cluster.evaluate import format_table
from puffer_cluster.policies import PolicyError, checkpoint_path
from puffer_cluster.registry import policy_factory
from puffer_cluster.record import HEAT_LEVELS
from puffer_cluster.render import GARDENER
from puffer_cluster.simarena import format_simarena_table
from puffer_cluster.traces import save_trace
from puffer_cluster.traces.generate import generate_trace

REPO = Path(__file__).resolve().parents[1]
TINY = ["--env.height", "6", "--env.width", "6", "--env.max-steps", "12"]


def run_cli(args: list[str], cwd: Path, code: str | None = None,
            **env) -> subprocess.CompletedProcess:
    """`puffer-cluster ARGS` (or `python -c CODE`) in a fresh interpreter run from `cwd`."""
    command = ["-c", code] if code is not None else ["-m", "puffer_cluster.cli", *args]
    return subprocess.run([sys.executable, *command], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=120)


# ---------------------------------------------------------------- a quiet start


@pytest.mark.parametrize("args, code", [
    (["--help"], None),
    ([], "import puffer_cluster, pufferlib.vector"),
])
def test_quiet_start_no_banner_no_symlink(tmp_path, args, code):
    result = run_cli(args, tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not os.path.lexists(tmp_path / "resources")


def test_a_failing_command_says_one_line(tmp_path):
    result = run_cli(["eval", "heuristic", "checkpoints/nothere.pt"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: checkpoint checkpoints/nothere.pt does not exist"]
    assert not os.path.lexists(tmp_path / "resources")


def test_python_dash_m_puffer_cluster_is_the_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "puffer_cluster", "traces"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: puffer-cluster traces: the following arguments are required: COMMAND "
        "(see puffer-cluster traces --help)"]


def test_commands_take_no_stray_arguments_unless_they_read_a_config(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["traces", "inspect", "x.sktrace", "--env.height", "6"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --env.height 6" in capsys.readouterr().err


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["traces", "inspect"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "required: FILE" in err and "--help" in err


# ---------------------------------------------------------------- help


def test_no_command_shows_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: puffer-cluster") and "record" in out and "eval" in out


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == \
        f"puffer-cluster {importlib.metadata.version('puffer-cluster')}"


def help_of(capsys, *command) -> str:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # unwrapped


def test_help_shows_defaults(capsys):
    text = help_of(capsys, "eval")
    assert "--episodes EPISODES episodes per policy" in text and "(default: 50)" in text
    assert "(default: 0)" in text and "gardener_ppo" in text
    text = help_of(capsys, "traces", "generate")
    assert "--count COUNT traces to write (default: 100)" in text
    assert "--seed SEED seed of" in text and "(default: 0)" in text
    text = help_of(capsys, "record")
    assert "(default: 100)" in text and "(default: None)" not in text


def test_train_help_explains_overrides_sections_and_runs(capsys):
    text = help_of(capsys, "train")
    assert "--section.key value" in text and "--train.total-timesteps 5e6" in text
    for section in load_config():
        assert f"[{section}]" in text
    assert "./runs" in text and "data_dir" in text


# ---------------------------------------------------------------- configs and checkpoints by name


@pytest.mark.parametrize("name", ["quick", "quick.ini"])
def test_shipped_configs_by_name_from_anywhere(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(name) == bundled_config_path("quick.ini")
    assert load_config(name)["train"]["name"] == "quick"


def test_a_config_path_wins_and_unknown_names_list_the_shipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("quick.ini").write_text("[train]\nname = mine\n")
    assert load_config("quick.ini")["train"]["name"] == "mine"
    assert load_config(tmp_path / "quick.ini")["train"]["name"] == "mine"
    with pytest.raises(ConfigError, match="shipped: cluster_ops, gardener, large, quick, replay, scratch, simarena"):
        load_config("quik")
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/quick.ini")  # a path, from a folder without it: not a name


def test_every_command_takes_a_config_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "heuristic", "--episodes", "2", "--config", "quick", *TINY]) == 0
    assert main(["eval", "heuristic", "--config", "nope"]) == 2
    assert "shipped: cluster_ops, gardener" in capsys.readouterr().err


def test_the_shipped_checkpoint_by_name_from_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert checkpoint_path("gardener_ppo").is_file()
    assert checkpoint_path("gardener_ppo.pt") == checkpoint_path("gardener_ppo")
    assert main(["eval", "heuristic", "gardener_ppo", "--episodes", "2", *TINY]) == 0
    assert "gardener_ppo win-rate: " in capsys.readouterr().out


def test_validate_takes_the_shipped_checkpoint_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_trace(generate_trace("cpu-slight", seed=0).trace, tmp_path / "t.msgpack")
    assert main(["validate", "heuristic", "gardener_ppo", "--traces", "t.msgpack",
                 "--episodes", "2", *TINY]) == 0
    assert "gardener_ppo win-rate: " in capsys.readouterr().out


def test_missing_checkpoints_and_unknown_policies_say_which(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config()
    for spec in ("checkpoints/nothere.pt", "nothere.pt", "runs/x/best"):
        with pytest.raises(PolicyError, match=f"checkpoint {spec} does not exist"):
            policy_factory(spec, config)
    with pytest.raises(PolicyError, match="unknown policy 'heuristc'.*gardener_ppo"):
        policy_factory("heuristc", config)


# ---------------------------------------------------------------- messages


def test_eval_episodes_names_the_option_and_its_range(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "heuristic", "--episodes", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--episodes" in err and ">= 1" in err and "num_envs" not in err


def test_inspect_lists_the_deployments_mutate_needs(tmp_path, capsys):
    path = tmp_path / "t.msgpack"
    save_trace(generate_trace("cpu-heavy", seed=0).trace, path)
    assert main(["traces", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("  default/"))
    name = line.split()[0].split("/")[1]
    assert "replicas" in line and "requests cpu" in line and "memory" in line
    assert main(["traces", "mutate", str(path), "--op", "reduce_cpu", "--deploy", name,
                 "--out", str(tmp_path / "fixed.msgpack")]) == 0


def rows(*names):
    row = dict(reward_mean=0.0, reward_std=0.0, steps_mean=1.0, oom_rate=0.0, crit_rate=0.0,
               avg_load_mean=0.0, solved_rate=0.0, edits_mean=0.0, refused_edits_mean=0.0,
               solved_by_scenario={}, reward="shaped", episodes=4, wins=1, ties=0)
    return [{**row, "name": name} for name in names]


def test_win_rates_capitalise_builtin_names_only():
    for table in (format_table(rows("random", "heuristic", "runs/a/best.pt")),
                  format_simarena_table(rows("random", "heuristic", "runs/a/best.pt"))):
        assert "Heuristic win-rate" in table and "runs/a/best.pt win-rate" in table
        assert "Runs/" not in table


# ---------------------------------------------------------------- the recorder


def test_record_a_gif_from_the_gym_envs_frames(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["record", "heuristic", "--out", "e.gif", "--steps", "5", *TINY]) == 0
    assert "wrote e.gif: 5 steps of heuristic" in capsys.readouterr().out
    with Image.open("e.gif") as gif:
        assert gif.n_frames == 6 and gif.size[0] >= 600
        gif.seek(5)
        last = np.asarray(gif.convert("RGB"))
    # The frame is the Gymnasium env's own render() after the same steps, in the GIF's colours.
    from puffer_cluster.env import GardenerGymEnv
    from puffer_cluster.record import record_frames
    env = GardenerGymEnv(render_mode="rgb_array", height=6, width=6, max_steps=12)
    policy = policy_factory("heuristic", load_config())(1, env.params)
    frames, _ = record_frames(env, policy, 5, 0)
    # Within the palette's steps: the heat map climbs 3 x 255 over HEAT_LEVELS colours.
    assert np.abs(last.astype(int) - frames[-1]).max() <= 3 * 255 // HEAT_LEVELS
    cyan = (frames[-1] == GARDENER).all(-1)
    assert cyan.any() and (last[cyan] == GARDENER).all()  # fixed colours stay exact


def test_record_stops_at_the_episodes_end_and_names_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["record", "gardener_ppo", "--out", "p.gif", "--steps", "50", *TINY]) == 0
    with Image.open("p.gif") as gif:
        assert gif.n_frames == 13  # the start and 12 steps: max_steps


def test_record_refuses_what_it_cannot_do_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["record", "heuristic", "--out", "e.gif", "--config", "simarena"]) == 2
    assert "the simarena env renders text only" in capsys.readouterr().err
    assert main(["record", "heuristic", "--out", "e.png"]) == 2
    assert main(["record", "heuristic", "--out", "no/e.gif"]) == 2
    assert main(["record", "heuristic", "--out", "e.gif", "--traces", "absent"]) == 2
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        assert main(["record", "heuristic", "--out", "e.mp4"]) == 2
        assert "imageio-ffmpeg" in capsys.readouterr().err
    assert not any(Path().iterdir())  # nothing written


def test_record_a_trace_replay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_trace(generate_trace("mem-slight", seed=0).trace, tmp_path / "t.msgpack")
    assert main(["record", "random", "--out", "r.gif", "--steps", "3", "--traces", "t.msgpack",
                 *TINY]) == 0
    with Image.open("r.gif") as gif:
        assert gif.n_frames == 4


# ---------------------------------------------------------------- the compile notice


def test_kernels_are_cold_only_without_a_cache(tmp_path):
    from puffer_cluster.env import GardenerGymEnv
    GardenerGymEnv(height=6, width=6).reset(seed=0)  # compiled or loaded: warm from now on
    assert not is_cold(event.reset_grids_serial)
    assert not is_cold(len)  # no Numba cache: nothing to say
    code = "from kernels import event; from kernels.jit_cache import is_cold; " \
           "print(is_cold(event.step), is_cold(event.reset_grids_serial))"
    result = run_cli([], tmp_path, code, NUMBA_CACHE_DIR=str(tmp_path))
    assert result.stdout.split() == ["True", "True"]
    # A new process finds this one's build: its cache key holds nothing of this process.
    result = run_cli([], tmp_path, code)
    assert result.stdout.split()[1] == "False"


def test_the_notice_is_said_once_on_a_cold_cache_never_on_a_warm_one(tmp_path):
    module = tmp_path / "coldmod.py"
    module.write_text("from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n")
    code = ("import sys; sys.path.insert(0, '.'); import coldmod; "
            "from kernels.jit_cache import announce_if_cold as a; "
            "a(coldmod.f); a(coldmod.f); coldmod.f(1); a(coldmod.f)")
    cold = run_cli([], tmp_path, code, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert cold.returncode == 0 and cold.stderr == MESSAGE + "\n"
    warm = run_cli([], tmp_path, code, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert warm.returncode == 0 and warm.stderr == ""
