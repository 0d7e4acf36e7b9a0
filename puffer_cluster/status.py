"""`puffer-cluster status` (seed: `rl status`): versions, CUDA and its devices, the models found,
the config in use and the kubeconfig's context. No API call unless `--check` (GET /version).

Exit status: 0; with --check, 3 no usable kubeconfig, 4 API unreachable.
"""
from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path

import yaml

from puffer_cluster.config import load_config, resolve_config_path


def add_parser(commands):
    parser = commands.add_parser(
        "status", help="versions, CUDA, models, config and kubeconfig context",
        description="Show the Python, torch, numba and pufferlib versions, CUDA and its devices, "
                    "the checkpoints shipped and found under --runs, the config in use and the "
                    "kubeconfig's current context. No API call unless --check.")
    parser.add_argument("--config", help="the config to show (default: configs/gardener.ini)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where to look for trained runs")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: its current context)")
    parser.add_argument("--check", action="store_true", help="also ask the API server its version")
    parser.set_defaults(handler=run)
    return parser


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
    from puffer_cluster.policies import shipped_checkpoints
    lines = [f"shipped checkpoints: {', '.join(shipped_checkpoints()) or 'none'}"]
    found = sorted(runs.glob("*/best.pt")) + sorted(runs.glob("*/final.pt")) if runs.is_dir() else []
    lines.append(f"runs in {runs}: " + (f"{len(found)} model(s)" if found else "none"))
    lines += [f"  {path}" for path in found]
    return lines


def _kube_context(kubeconfig: str | None, context: str | None) -> tuple[list[str], str | None]:
    """Lines about the kubeconfig, read as a file (no API call), and the usable kubeconfig."""
    from puffer_cluster.simkube_run import KubeconfigError, find_kubeconfig
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


def run(args, overrides: list[str]) -> int:
    config = load_config(args.config, overrides)
    import numba
    lines = [f"Python {platform.python_version()} ({sys.executable})",
             f"torch {_version('torch')}, numba {numba.__version__}, pufferlib {_version('pufferlib')}, "
             f"puffer-cluster {_version('puffer-cluster')}"]
    lines += _cuda()
    lines += _models(args.runs)
    source = resolve_config_path(args.config) if args.config else "configs/gardener.ini (defaults)"
    lines.append(f"config: {source}; env {config['base']['env_name']}, "
                 f"{config['env']['num_envs']} envs, device {config['train']['device']}")
    kube_lines, kubeconfig = _kube_context(args.kubeconfig, args.context)
    lines += kube_lines
    print("\n".join(lines))
    if args.check:
        from puffer_cluster.cluster_ops.live import ClusterReader
        from puffer_cluster.simkube_run import (
            KubeconfigError, SimkubeRunError, api_client_from_kubeconfig,
        )
        try:
            if kubeconfig is None:
                raise KubeconfigError("--check needs a usable kubeconfig")
            api = api_client_from_kubeconfig(kubeconfig, args.context)
            print(f"API server {api.configuration.host}: Kubernetes "
                  f"{ClusterReader(api).check_reachable()}")
        except SimkubeRunError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
    return 0
