"""Trained policies shipped with the package: `gardener_ppo.pt` (see the README's Training).

A data package: `puffer_cluster.policies.checkpoint_path('gardener_ppo')` finds them."""
