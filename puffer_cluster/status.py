"""What `puffer-cluster status` (seed: `rl status`) shows: versions, CUDA and its devices, the
models found, the config in use and the kubeconfig's context; the API server's version only when
asked (GET /version)."""
from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path

import numba
import yaml

from puffer_cluster.cluster_ops.live import ClusterReader
from puffer_cluster.config import resolve_config_path
from puffer_cluster.policies import shipped_checkpoints
from puffer_cluster.simkube.client import api_client_from_kubeconfig, find_kubeconfig
from puffer_cluster.simkube.errors import KubeconfigError


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cuda() -> list[str]:
    import torch
    if not torch.cuda.is_available():
        return [f"CUDA: not available (torch {torch.__version__})"]
    return [f"CUDA: {torch.version.cuda}, {torch.cuda.device_count()} device(s)"] + [
        f"  cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]


def _models(runs: Path) -> list[str]:
    lines = [f"shipped checkpoints: {', '.join(shipped_checkpoints()) or 'none'}"]
    found = sorted(runs.glob("*/best.pt")) + sorted(runs.glob("*/final.pt")) if runs.is_dir() else []
    lines.append(f"runs in {runs}: " + (f"{len(found)} model(s)" if found else "none"))
    lines += [f"  {path}" for path in found]
    return lines


def _kube_context(kubeconfig: str | None, context: str | None) -> tuple[list[str], str | None]:
    """Lines about the kubeconfig, read as a file (no API call), and the usable kubeconfig."""
    try:
        path = find_kubeconfig(kubeconfig)
    except KubeconfigError as error:
        return [f"kubeconfig: {error}"], None
    if path is None:
        return ["kubeconfig: none ($KUBECONFIG unset, no ~/.kube/config)"], None
    try:
        document = yaml.safe_load(Path(path.split(":")[0]).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        return [f"kubeconfig {path}: unreadable ({error})"], path
    name = context or document.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or []}
    if name not in contexts:
        return [f"kubeconfig {path}: no context {name!r}"], path
    servers = {c.get("name"): (c.get("cluster") or {}).get("server") for c in document.get("clusters") or []}
    cluster = contexts[name].get("cluster")
    return [f"kubeconfig {path}: context {name} (cluster {cluster}, server {servers.get(cluster, '?')})"], path


def status_lines(config: dict, config_name: str | None, runs: Path, kubeconfig: str | None,
                 context: str | None) -> tuple[list[str], str | None]:
    """The report's lines (no API call) and the usable kubeconfig, if any."""
    lines = [f"Python {platform.python_version()} ({sys.executable})",
             f"torch {_version('torch')}, numba {numba.__version__}, pufferlib {_version('pufferlib')}, "
             f"puffer-cluster {_version('puffer-cluster')}"]
    lines += _cuda()
    lines += _models(runs)
    source = resolve_config_path(config_name) if config_name else "configs/gardener.ini (defaults)"
    lines.append(f"config: {source}; env {config['base']['env_name']}, "
                 f"{config['env']['num_envs']} envs, device {config['train']['device']}")
    kube_lines, usable = _kube_context(kubeconfig, context)
    return lines + kube_lines, usable


def api_version(kubeconfig: str | None, context: str | None) -> str:
    """'API server <host>: Kubernetes <version>' (GET /version); KubeconfigError without a
    usable kubeconfig, ApiUnreachableError when nothing answers."""
    if kubeconfig is None:
        raise KubeconfigError("--check needs a usable kubeconfig")
    api = api_client_from_kubeconfig(kubeconfig, context)
    return f"API server {api.configuration.host}: Kubernetes {ClusterReader(api).check_reachable()}"
