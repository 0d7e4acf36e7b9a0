"""puffer-cluster: autonomous Kubernetes cluster maintenance as a fast RL environment."""
import gymnasium

from puffer_cluster.config import ConfigError, load_config
from puffer_cluster.env import GardenerEnv, GardenerGymEnv, InvalidActionError

GYM_ID = "PufferCluster/Gardener-v0"

if GYM_ID not in gymnasium.registry:
    gymnasium.register(id=GYM_ID, entry_point="puffer_cluster.env:GardenerGymEnv")

__all__ = ["GYM_ID", "ConfigError", "GardenerEnv", "GardenerGymEnv", "InvalidActionError",
           "load_config"]
