"""`puffer-cluster train`: the `[train] trainer` (PPO, DQN, the tabular epsilon-greedy agent) on the
env of the config, or a run resumed from its checkpoint."""
from __future__ import annotations

from puffer_cluster.cli.common import CONFIG_HELP
from puffer_cluster.config import ConfigError, apply_overrides, load_config
from puffer_cluster.trainers.checkpoint import load_checkpoint


def _description() -> str:
    sections = ", ".join(f"[{section}]" for section in load_config())
    return ("Train on the env of the config (the gardener world by default; SimArena with "
            "--config simarena) with the trainer of [train] trainer: ppo (default), pufferl "
            "(PufferLib's own PuffeRL: [pufferl] section, --train.teacher none), dqn or "
            "eps_greedy (e.g. --train.trainer dqn). The config is configs/gardener.ini, which "
            "documents every key, updated by --config, then by any key given after the options "
            "as --section.key value (dashes or underscores; --section.key=value works too), e.g. "
            "--train.total-timesteps 5e6 --env.height 32 --policy.name lstm. Config sections: "
            f"{sections}. Each run writes runs/<env_name>__<name>__<seed>__<time>/ under the "
            "current directory ([train] data_dir, default ./runs): TensorBoard events, the "
            "resolved config.ini, best.pt, final.pt and latest.pt.")


def add_parser(commands):
    parser = commands.add_parser("train", help="train PPO, DQN or the tabular agent (the main job)",
                                 description=_description())
    parser.add_argument("--config", help=CONFIG_HELP + "; quick is a one-minute run")
    parser.add_argument("--resume", help="continue a run from its latest.pt")
    return parser


def resumed_config(checkpoint: str, overrides: list[str]) -> dict:
    """The checkpoint's own config, updated by `overrides`; keys added since the checkpoint
    was written take their defaults."""
    saved, defaults = load_checkpoint(checkpoint, True)["config"], load_config()
    return apply_overrides({section: {**values, **saved.get(section, {})}
                            for section, values in defaults.items()}, overrides)


def run(args, overrides: list[str]) -> int:
    """Train, then print the final policy against the heuristic on the benchmark's episodes
    (`[eval] episodes` and `seed`) and the run directory. A signal exits 128 + its number."""
    from puffer_cluster.evaluate import evaluate, format_table
    from puffer_cluster.trainers import TRAINERS
    from puffer_cluster.trainers.stopping import TrainingInterrupted
    from puffer_cluster.trainers.train_config import validate_train_config
    if args.resume and args.config:
        raise ConfigError("--resume continues with the checkpoint's own config; "
                          "drop --config (overrides are still accepted)")
    config = (resumed_config(args.resume, overrides) if args.resume
              else load_config(args.config, overrides))
    validate_train_config(config)  # [train] trainer names one of TRAINERS
    try:  # the trainer checks the whole config before it creates anything
        run_dir = TRAINERS[config["train"]["trainer"]](config, resume=args.resume)
    except TrainingInterrupted as stop:
        print(stop, flush=True)
        return 128 + stop.signum
    episodes, seed = config["eval"]["episodes"], config["eval"]["seed"]
    print(f"final policy against the heuristic on the benchmark's {episodes} episodes "
          f"from seed {seed}:", flush=True)
    print(format_table(evaluate(["heuristic", str(run_dir / "final.pt")], episodes, seed, config)))
    print(f"run directory: {run_dir}")
    return 0
