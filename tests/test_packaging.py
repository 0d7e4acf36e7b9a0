"""The installed names: kernels/, trainers/, configs/ and checkpoints/ install under puffer_cluster,
so the project claims no generic top-level name (`import kernels` fails outside the repository),
both from the editable install and from a regular wheel."""
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import importlib.util, json, sys
import puffer_cluster.kernels.world, puffer_cluster.trainers.checkpoint
from puffer_cluster.config import load_config, shipped_configs
from puffer_cluster.policies import shipped_checkpoints
print(json.dumps({
    "kernels": puffer_cluster.kernels.world.__file__,
    "configs": shipped_configs(), "checkpoints": shipped_checkpoints(),
    "quick_steps": load_config("quick")["train"]["total_timesteps"],
    "top_level": [name for name in ("kernels", "trainers", "configs", "checkpoints")
                  if importlib.util.find_spec(name) is not None],
}))
"""


def probe(cwd: Path, pythonpath: str | None = None) -> dict:
    import json
    import os
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_editable_install_serves_this_checkout_under_puffer_cluster_only(tmp_path):
    found = probe(tmp_path)
    if not Path(found["kernels"]).resolve().is_relative_to(ROOT):
        pytest.skip(f"the environment's puffer-cluster is another checkout ({found['kernels']})")
    assert Path(found["kernels"]).resolve() == ROOT / "kernels" / "world.py"
    assert found["top_level"] == []
    assert found["configs"] == sorted(path.stem for path in (ROOT / "configs").glob("*.ini"))
    assert found["checkpoints"] == sorted(path.stem for path in (ROOT / "checkpoints").glob("*.pt"))


def test_wheel_holds_only_puffer_cluster_and_works_from_another_directory(tmp_path):
    source = tmp_path / "source"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout: the wheel is built from the tracked files")
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("puffer_cluster-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    top = {name.split("/")[0] for name in names}
    assert top == {"puffer_cluster", wheel.name.split("-py")[0] + ".dist-info"}, top
    assert "puffer_cluster/kernels/event.py" in names
    assert "puffer_cluster/configs/gardener.ini" in names
    assert "puffer_cluster/checkpoints/gardener_ppo.pt" in names

    found = probe(tmp_path, pythonpath=str(tmp_path / "site"))
    assert Path(found["kernels"]).resolve() == tmp_path / "site/puffer_cluster/kernels/world.py"
    assert found["top_level"] == []
    assert found["configs"] == sorted(path.stem for path in (ROOT / "configs").glob("*.ini"))
    assert found["checkpoints"] == sorted(path.stem for path in (ROOT / "checkpoints").glob("*.pt"))
    quick = configparser.ConfigParser()
    quick.read(ROOT / "configs" / "quick.ini")
    assert found["quick_steps"] == int(quick["train"]["total_timesteps"].replace("_", ""))
