"""puffer-cluster: autonomous Kubernetes cluster maintenance as a fast RL environment."""
import contextlib
import importlib.metadata
import os
import sys


def _import_pufferlib_quietly() -> None:
    """Import pufferlib (and the gym it pulls in) without its side effects on the user's terminal
    and folder: gym prints a three-line "unmaintained" banner on stderr, and pufferlib's import
    symlinks its `resources` folder (assets of its Ocean games, unused here) into the current
    directory, or fails in a read-only one."""
    symlink = os.symlink

    def skip_resources_link(source, target, *args, **kwargs):
        if os.fspath(target) != "resources":
            symlink(source, target, *args, **kwargs)

    os.symlink = skip_resources_link
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            import pufferlib  # noqa: F401  (imports gym, through pufferlib.spaces)
    finally:
        os.symlink = symlink


if "pufferlib" not in sys.modules:
    _import_pufferlib_quietly()

import gymnasium  # noqa: E402

from puffer_cluster.config import ConfigError, load_config  # noqa: E402
from puffer_cluster.env import GardenerEnv, GardenerGymEnv, InvalidActionError  # noqa: E402

try:
    __version__ = importlib.metadata.version("puffer-cluster")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"

GYM_ID = "PufferCluster/Gardener-v0"
REPLAY_GYM_ID = "PufferCluster/TraceReplay-v0"
CLUSTER_OPS_GYM_ID = "PufferCluster/ClusterOps-v0"

for gym_id, entry_point in ((GYM_ID, "puffer_cluster.env:GardenerGymEnv"),
                            (REPLAY_GYM_ID, "puffer_cluster.replay:TraceReplayGymEnv"),
                            (CLUSTER_OPS_GYM_ID, "puffer_cluster.cluster_ops.env:ClusterOpsGymEnv")):
    if gym_id not in gymnasium.registry:
        gymnasium.register(id=gym_id, entry_point=entry_point)

__all__ = ["CLUSTER_OPS_GYM_ID", "GYM_ID", "REPLAY_GYM_ID", "ConfigError", "GardenerEnv", "GardenerGymEnv", "InvalidActionError",
           "__version__", "load_config"]
