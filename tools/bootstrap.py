"""Create `.venv` and install everything the project needs, with nothing done by hand.

Run with any Python >= 3.10: `python3 tools/bootstrap.py`. Idempotent: a second run only
checks what is installed and takes seconds.

pufferlib 3.0.0 cannot be installed from its PyPI sdist as-is on machines without GitHub access:
its setup.py downloads raylib/box2d builds, and an `nvcc` on PATH makes it compile a CUDA
extension. We fetch the sdist through pip's own index machinery (so pip's configured index,
certificates and proxies apply), neutralise the downloads, build a wheel once and cache it under
`$XDG_CACHE_HOME/puffer-cluster/wheels/torch-<version>/` so later installs take seconds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
PUFFERLIB_VERSION = "3.0.0"
TORCH_CPU_VERSION = "2.13.0"
# Folders setup.py would download from GitHub; it skips the download when they exist.
PUFFERLIB_DOWNLOAD_DIRS = ("raylib-5.5_webassembly", "box2d-web", "box2d-linux-amd64")
# The only Ocean env that links box2d; without the download it cannot build.
PUFFERLIB_BOX2D_BINDING = "pufferlib/ocean/impulse_wars/binding.c"
# Build-time requirements of pufferlib's setup.py (it imports numpy and torch).
PUFFERLIB_BUILD_REQUIREMENTS = ("numpy<2", "Cython", "setuptools", "wheel")


def log(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> None:
    subprocess.run(args, check=True, env=env, cwd=cwd)


def venv_has(module_check: str) -> bool:
    """True when `module_check` (Python code) runs cleanly in the venv."""
    result = subprocess.run([str(VENV_PY), "-c", module_check], capture_output=True)
    return result.returncode == 0


def system_has_cuda_torch() -> bool:
    check = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", check], capture_output=True).returncode == 0


def pip(*args: str, env: dict | None = None) -> None:
    run(str(VENV_PY), "-m", "pip", "--disable-pip-version-check", "-q", *args, env=env)


def create_venv() -> None:
    if VENV_PY.exists():
        return
    # A machine that already has a CUDA torch keeps it: the venv sees the system packages.
    inherit = system_has_cuda_torch()
    log(f"creating {VENV} (system site packages: {inherit})")
    run(sys.executable, "-m", "venv", *(["--system-site-packages"] if inherit else []), str(VENV))


def install_torch() -> None:
    if venv_has("import torch"):
        return
    # A pinned version takes the local CPU wheel; an unpinned one pulls the CUDA stack.
    log(f"installing torch=={TORCH_CPU_VERSION}")
    pip("install", f"torch=={TORCH_CPU_VERSION}")


def torch_version() -> str:
    out = subprocess.run([str(VENV_PY), "-c", "import torch; print(torch.__version__)"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def wheel_cache_dir() -> Path:
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    # The wheel's C++ extension links against torch: one cache per torch build.
    return cache_home / "puffer-cluster" / "wheels" / f"torch-{torch_version()}"


# Runs inside the venv: asks pip's PackageFinder for the sdist link and downloads it with pip's
# own session, so the user's pip configuration (index URLs, certificates) is honoured.
FETCH_SDIST = r"""
import sys
from pip._internal.commands import create_command
name, version, dest = sys.argv[1:4]
command = create_command("download")
options, _ = command.parse_args(["--no-deps"])
with command.main_context():
    session = command.get_default_session(options)
    finder = command._build_package_finder(options, session)
    links = [c.link for c in finder.find_all_candidates(name)
             if str(c.version) == version and c.link.filename.endswith(".tar.gz")]
    if not links:
        sys.exit(f"no sdist of {name}=={version} on the configured index")
    response = session.get(links[0].url_without_fragment)
    response.raise_for_status()
    path = f"{dest}/{links[0].filename}"
    with open(path, "wb") as f:
        f.write(response.content)
    print(path)
"""


def build_pufferlib_wheel(cache: Path) -> Path:
    log(f"building pufferlib {PUFFERLIB_VERSION} from its sdist (once; cached in {cache})")
    pip("install", *PUFFERLIB_BUILD_REQUIREMENTS)
    with tempfile.TemporaryDirectory(prefix="pufferlib-build-") as tmp:
        tmp_path = Path(tmp)
        out = subprocess.run([str(VENV_PY), "-c", FETCH_SDIST, "pufferlib", PUFFERLIB_VERSION, tmp],
                             check=True, capture_output=True, text=True)
        sdist = Path(out.stdout.strip().splitlines()[-1])
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp_path, filter="data")
        source = tmp_path / f"pufferlib-{PUFFERLIB_VERSION}"
        for folder in PUFFERLIB_DOWNLOAD_DIRS:
            (source / folder).mkdir(exist_ok=True)
        (source / PUFFERLIB_BOX2D_BINDING).unlink(missing_ok=True)
        env = dict(os.environ)
        # No nvcc on PATH: setup.py would otherwise build a CUDA extension.
        env["PATH"] = os.pathsep.join(
            d for d in env.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "nvcc").exists())
        env.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
        staging = tmp_path / "wheel"
        pip("wheel", "--no-build-isolation", "--no-deps", "-w", str(staging), str(source), env=env)
        built = next(staging.glob("pufferlib-*.whl"))
        cache.mkdir(parents=True, exist_ok=True)
        # Copy then rename: an interrupted build never leaves a half-written wheel in the cache.
        partial = cache / (built.name + ".partial")
        shutil.copyfile(built, partial)
        partial.replace(cache / built.name)
        return cache / built.name


def install_pufferlib() -> None:
    if venv_has(f"import importlib.metadata as m; assert m.version('pufferlib') == '{PUFFERLIB_VERSION}'"):
        return
    cache = wheel_cache_dir()
    wheels = sorted(cache.glob(f"pufferlib-{PUFFERLIB_VERSION}-*.whl"))
    wheel = wheels[-1] if wheels else build_pufferlib_wheel(cache)
    log(f"installing {wheel.name}")
    # kubernetes>=37 conflicts with neptune's botocore pin (neptune is a pufferlib requirement).
    pip("install", str(wheel), "kubernetes<37")


def install_project() -> None:
    marker = VENV / ".puffer-cluster-installed"
    stamp = (ROOT / "pyproject.toml").read_text()
    if marker.exists() and marker.read_text() == stamp and venv_has("import puffer_cluster"):
        return
    log("installing puffer-cluster (editable) with its test dependencies")
    pip("install", "-e", f"{ROOT}[test]")
    marker.write_text(stamp)


def main() -> None:
    create_venv()
    install_torch()
    install_pufferlib()
    install_project()
    log("ready: .venv")


if __name__ == "__main__":
    main()
