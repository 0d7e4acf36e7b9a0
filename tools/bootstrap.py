"""Create `.venv` and install everything the project needs, with nothing done by hand.

Run with any Python >= 3.10: `python3 tools/bootstrap.py`. Idempotent: a second run only
checks what is installed and takes seconds.

pufferlib 3.0.0 cannot be installed from its PyPI sdist as-is on machines without GitHub access:
its setup.py downloads raylib/box2d builds, and an `nvcc` on PATH makes it compile a CUDA
extension. We fetch the sdist through pip's own index machinery (so pip's configured index,
certificates and proxies apply), neutralise the downloads, build a wheel once and cache it under
`$XDG_CACHE_HOME/puffer-cluster/wheels/torch-<version>/` so later installs take seconds.

It prints its six steps with their timings; the output of pip and the build is shown only
when a step fails.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
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
STEPS = 6


def step(number: int, title: str, action, skip: str | None = None):
    """`[n/6] title ... done (12.3 s)`: run `action()` and return its result, unless `skip`
    says why it is not needed."""
    print(f"[{number}/{STEPS}] {title} ...", end=" ", flush=True)
    if skip:
        print(skip, flush=True)
        return None
    start = time.monotonic()
    result = action()
    print(f"done ({time.monotonic() - start:.1f} s)", flush=True)
    return result


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> str:
    """Run a command quietly and return its stdout; on failure show all its output and stop."""
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        print("failed", flush=True)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        raise SystemExit(f"bootstrap: `{' '.join(args[:5])} ...` exited with {result.returncode} "
                         "(its output is above)")
    return result.stdout


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
    # A machine that already has a CUDA torch keeps it: the venv sees the system packages.
    inherit = system_has_cuda_torch()
    run(sys.executable, "-m", "venv", *(["--system-site-packages"] if inherit else []), str(VENV))


def install_torch() -> None:
    # A pinned version takes the local CPU wheel; an unpinned one pulls the CUDA stack.
    pip("install", f"torch=={TORCH_CPU_VERSION}")


def torch_version() -> str:
    return run(str(VENV_PY), "-c", "import torch; print(torch.__version__)").strip()


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


def fetch_sdist(tmp: Path) -> Path:
    out = run(str(VENV_PY), "-c", FETCH_SDIST, "pufferlib", PUFFERLIB_VERSION, str(tmp))
    return Path(out.strip().splitlines()[-1])


def build_pufferlib_wheel(sdist: Path, tmp: Path, cache: Path) -> Path:
    pip("install", *PUFFERLIB_BUILD_REQUIREMENTS)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp, filter="data")
    source = tmp / f"pufferlib-{PUFFERLIB_VERSION}"
    for folder in PUFFERLIB_DOWNLOAD_DIRS:
        (source / folder).mkdir(exist_ok=True)
    (source / PUFFERLIB_BOX2D_BINDING).unlink(missing_ok=True)
    env = dict(os.environ)
    # No nvcc on PATH: setup.py would otherwise build a CUDA extension.
    env["PATH"] = os.pathsep.join(
        d for d in env.get("PATH", "").split(os.pathsep)
        if d and not (Path(d) / "nvcc").exists())
    env.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
    staging = tmp / "wheel"
    pip("wheel", "--no-build-isolation", "--no-deps", "-w", str(staging), str(source), env=env)
    built = next(staging.glob("pufferlib-*.whl"))
    cache.mkdir(parents=True, exist_ok=True)
    # Copy then rename: an interrupted build never leaves a half-written wheel in the cache.
    partial = cache / (built.name + ".partial")
    shutil.copyfile(built, partial)
    partial.replace(cache / built.name)
    return cache / built.name


def install_pufferlib(wheel: Path) -> None:
    # kubernetes>=37 conflicts with neptune's botocore pin (neptune is a pufferlib requirement).
    pip("install", str(wheel), "kubernetes<37")


PROJECT_MARKER = VENV / ".puffer-cluster-installed"


def project_installed() -> bool:
    stamp = (ROOT / "pyproject.toml").read_text()
    return (PROJECT_MARKER.exists() and PROJECT_MARKER.read_text() == stamp
            and venv_has("import puffer_cluster"))


def install_project() -> None:
    pip("install", "-e", f"{ROOT}[test]")
    PROJECT_MARKER.write_text((ROOT / "pyproject.toml").read_text())


def main() -> None:
    start = time.monotonic()
    step(1, "creating .venv", create_venv, skip="already there" if VENV_PY.exists() else None)
    step(2, f"installing torch=={TORCH_CPU_VERSION}", install_torch,
         skip="torch already there" if venv_has("import torch") else None)
    installed = venv_has("import importlib.metadata as m; "
                         f"assert m.version('pufferlib') == '{PUFFERLIB_VERSION}'")
    cache = wheel_cache_dir()
    cached = sorted(cache.glob(f"pufferlib-{PUFFERLIB_VERSION}-*.whl"))
    no_build = "not needed: installed" if installed else \
        (f"not needed: wheel cached in {cache}" if cached else None)
    with tempfile.TemporaryDirectory(prefix="pufferlib-build-") as tmp:
        sdist = step(3, f"fetching the pufferlib {PUFFERLIB_VERSION} sdist",
                     lambda: fetch_sdist(Path(tmp)), skip=no_build)
        built = step(4, "building its wheel without downloads or CUDA (once: ~4 minutes)",
                     lambda: build_pufferlib_wheel(sdist, Path(tmp), cache), skip=no_build)
    wheel = built or (cached[-1] if cached else None)
    step(5, f"installing pufferlib {PUFFERLIB_VERSION}", lambda: install_pufferlib(wheel),
         skip="already there" if installed else None)
    step(6, "installing puffer-cluster (editable, with its test extras)", install_project,
         skip="up to date" if project_installed() else None)
    print(f"ready: {VENV} ({time.monotonic() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
