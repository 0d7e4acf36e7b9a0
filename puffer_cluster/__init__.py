"""puffer-cluster: autonomous Kubernetes cluster maintenance as a fast RL environment."""
import gymnasium

from puffer_cluster.config import ConfigError, load_config
from puffer_cluster.env import GardenerEnv, GardenerGymEnv, InvalidActionError

GYM_ID = "PufferCluster/Gardener-v0"
REPLAY_GYM_ID = "PufferCluster/TraceReplay-v0"

for gym_id, entry_point in ((GYM_ID, "puffer_cluster.env:GardenerGymEnv"),
                            (REPLAY_GYM_ID, "puffer_cluster.replay:TraceReplayGymEnv")):
    if gym_id not in gymnasium.registry:
        gymnasium.register(id=gym_id, entry_point=entry_point)

__all__ = ["GYM_ID", "REPLAY_GYM_ID", "ConfigError", "GardenerEnv", "GardenerGymEnv", "InvalidActionError",
           "load_config"]
