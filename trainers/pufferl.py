"""PufferLib 3.0's own trainer, `PuffeRL`, on our envs, our network and our config file.

`[train] trainer = pufferl`. PuffeRL's own keys come from `[pufferl]`, the meanings it shares
with our PPO from `[train]` (configs/gardener.ini lists which). Our loop drives PuffeRL's
`evaluate()` (the rollout) and `train()` (its update) as its own `pufferl.train` does, so that
the run gets our run directory, progress view, held-out evaluation and signals; the policy is
saved in our checkpoint format, which `puffer-cluster eval` plays.
"""
from __future__ import annotations

import os
import random
import signal
import sys
import warnings
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from puffer_cluster.config import ConfigError, config_section, load_config, settings_from
from puffer_cluster.evaluate import heldout_return
from puffer_cluster.registry import get_env_spec, policy_factory
from puffer_cluster.trainers.checkpoint import save_atomic
from puffer_cluster.trainers.curves import plot_learning_curve
from puffer_cluster.trainers.dashboard import Dashboard
from puffer_cluster.trainers.models import make_policy
from puffer_cluster.trainers.ppo import evaluate_greedy, open_run_dir
from puffer_cluster.trainers.stopping import StopOnSignal, TrainingInterrupted, workers_ignore_ctrl_c
from puffer_cluster.trainers.train_config import num_agents, resolve_device, validate_train_config
from puffer_cluster.trainers.training_state import policy_payload

OPTIMIZERS = ("adam", "muon")
# PuffeRL's own checkpoints (its state_dict snapshots, trainer_state.pt) go to <run dir>/<this>/.
PUFFERL_FOLDER = "pufferl"
DEFAULT_RUN_NAME = load_config()["train"]["name"]


@config_section("pufferl")
class PuffeRLSettings:
    """The `[pufferl]` config section (configs/gardener.ini documents every key)."""
    bptt_horizon: int
    max_minibatch_size: int
    optimizer: str
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    vf_clip_coef: float
    vtrace_rho_clip: float
    vtrace_c_clip: float
    prio_alpha: float
    prio_beta0: float
    cpu_offload: bool
    compile_mode: str
    compile_fullgraph: bool

    def __post_init__(self):
        checks = [
            (self.bptt_horizon >= 1, "bptt_horizon must be at least 1"),
            (self.max_minibatch_size >= 0, "max_minibatch_size must be >= 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1,
             "adam_beta1 and adam_beta2 must be within [0, 1)"),
            (self.adam_eps > 0, "adam_eps must be > 0"),
            (0 <= self.prio_alpha <= 1 and 0 <= self.prio_beta0 <= 1,
             "prio_alpha and prio_beta0 must be within [0, 1]"),
        ]
        for name in ("vf_clip_coef", "vtrace_rho_clip", "vtrace_c_clip"):
            checks.append((getattr(self, name) >= 0, f"{name} must be >= 0"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"[pufferl] {message}")


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ or "LOCAL_RANK" in os.environ


def check_pufferl_config(config: dict, resume: str | None) -> PuffeRLSettings:
    """Raise `ConfigError` for what PuffeRL cannot run (beyond `validate_train_config`)."""
    train = config["train"]
    if resume:
        raise ConfigError("--resume continues our ppo runs only; a pufferl run starts afresh")
    if train["teacher"] != "none":
        raise ConfigError(f"train.teacher must be none with train.trainer pufferl (kickstarting "
                          f"is our PPO's alone), got {train['teacher']!r}")
    if config["policy"]["name"] != "mlp":
        raise ConfigError(f"policy.name must be mlp with train.trainer pufferl (PuffeRL's update "
                          f"replays segments without episode starts), got "
                          f"{config['policy']['name']!r}")
    if under_torchrun():
        if resolve_device(train["device"]).type == "cpu":
            raise ConfigError("train.trainer pufferl under torchrun on CPU: PufferLib's "
                              "distributed training uses nccl, which needs CUDA; run it "
                              "without torchrun")
        raise ConfigError("train.trainer pufferl runs one process on one device; run it "
                          "without torchrun")
    settings = settings_from(PuffeRLSettings, config)
    horizon, num_steps = settings.bptt_horizon, train["num_steps"]
    if num_steps % horizon:
        raise ConfigError(f"pufferl.bptt_horizon must divide train.num_steps ({num_steps}), "
                          f"got {horizon}")
    minibatch = num_agents(config) * num_steps // train["num_minibatches"]
    if minibatch % horizon:
        raise ConfigError(f"the minibatch (agents x num_steps / num_minibatches = {minibatch}) "
                          f"must be a multiple of pufferl.bptt_horizon ({horizon})")
    chunk = settings.max_minibatch_size
    if chunk and (chunk % horizon or minibatch % chunk):
        raise ConfigError(f"pufferl.max_minibatch_size must be a multiple of bptt_horizon "
                          f"({horizon}) dividing the minibatch ({minibatch}), or 0; got {chunk}")
    return settings


def import_pufferl():
    """`pufferlib.pufferl`, with what its import does to the whole process undone: it turns
    RuntimeWarnings into errors, makes Ctrl-C exit at once with status 0 and installs rich's
    traceback hook."""
    sigint, excepthook = signal.getsignal(signal.SIGINT), sys.excepthook
    try:
        with warnings.catch_warnings():
            import pufferlib.pufferl as pufferl
    except ImportError as error:  # its compiled advantage kernel is missing
        raise ConfigError(f"train.trainer pufferl: pufferlib.pufferl does not import ({error})") \
            from None
    finally:
        signal.signal(signal.SIGINT, sigint)
        sys.excepthook = excepthook
    # It runs its advantage kernel on the device whenever an nvcc is on PATH; our pufferlib
    # build has a CPU kernel only (tools/bootstrap.py), so ask the kernel instead.
    pufferl.ADVANTAGE_CUDA = torch._C._dispatch_has_kernel_for_dispatch_key(
        "pufferlib::compute_puff_advantage", "CUDA")
    return pufferl


def puffer_train_config(config: dict, settings: PuffeRLSettings, device: torch.device,
                        iterations: int, data_dir: Path) -> dict:
    """PuffeRL's config dict: `[pufferl]`, and the keys it shares with `[train]`."""
    train = config["train"]
    batch = num_agents(config) * train["num_steps"]
    minibatch = batch // train["num_minibatches"]
    return {
        **{name: getattr(settings, name) for name in settings.config_sources},
        "max_minibatch_size": settings.max_minibatch_size or minibatch,
        "env": config["base"]["env_name"], "seed": config["vec"]["seed"],
        "device": str(device), "use_rnn": False, "batch_size": batch, "minibatch_size": minibatch,
        "total_timesteps": iterations * batch, "data_dir": str(data_dir),
        **{key: train[key] for key in (
            "torch_deterministic", "precision", "compile", "learning_rate", "anneal_lr", "gamma",
            "gae_lambda", "update_epochs", "clip_coef", "ent_coef", "vf_coef", "max_grad_norm",
            "checkpoint_interval")},
    }


def pufferl_run_config(config: dict) -> dict:
    """The config a pufferl run trains with and saves: the plain observation (the privileged
    critic's features are our PPO's alone), and the default run name (ppo) naming the trainer."""
    name = "pufferl" if config["train"]["name"] == DEFAULT_RUN_NAME else config["train"]["name"]
    return {**config, "policy": {**config["policy"], "critic": "plain"},
            "train": {**config["train"], "name": name}}


def new_puffer_rl(pufferl, train_config: dict, vecenv, policy: nn.Module, logger=None):
    """A `PuffeRL` without its full-screen dashboard (our progress view shows the run)."""
    class QuietPuffeRL(pufferl.PuffeRL):
        def print_dashboard(self, *args, **kwargs):
            pass

    with warnings.catch_warnings():  # it asks for CUDA autocast even on the CPU
        warnings.filterwarnings("ignore", "CUDA is not available", UserWarning)
        return QuietPuffeRL(train_config, vecenv, policy, logger)


def make_puffer_vecenv(config: dict):
    """The env PuffeRL trains on: the config's, as our PPO builds it."""
    return get_env_spec(config["base"]["env_name"]).make_vecenv(config)


class PuffeRLPolicy(nn.Module):
    """Our network with the two calls PuffeRL makes: `forward_eval` to act, `forward` to learn."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward_eval(self, observations, state=None):
        logits, values, _ = self.model.step(observations, (), None)
        return logits, values

    def forward(self, observations, state=None):
        return self.forward_eval(observations, state)


class TensorBoardLogger:
    """PuffeRL's logger interface (`run_id`, `log`, `close`), writing TensorBoard scalars under
    our names (CleanRL's: charts/SPS, charts/episodic_return, losses/*, environment/*)."""

    run_id = PUFFERL_FOLDER

    def __init__(self, writer: SummaryWriter):
        self.writer = writer

    @staticmethod
    def scalars(logs: dict) -> dict:
        # Its losses/* lag one log behind (it logs before it stores the update's losses): the
        # loop writes each update's own with `loss_scalars` instead.
        scalars = {key if "/" in key else f"charts/{key}": float(value)
                   for key, value in logs.items() if not key.startswith("losses/")
                   and isinstance(value, (int, float, np.number)) and np.isfinite(value)}
        if "charts/SPS" in scalars:
            scalars["charts/SPS"] = int(scalars["charts/SPS"])
        for ours, theirs in (("charts/episodic_return", "environment/episode_return"),
                             ("charts/episodic_length", "environment/episode_length")):
            if theirs in scalars:
                scalars[ours] = scalars[theirs]
        return scalars

    @staticmethod
    def loss_scalars(losses: dict) -> dict:
        return {f"losses/{key}": float(value) for key, value in losses.items()
                if np.isfinite(value)}

    def log(self, logs: dict, step: int) -> None:
        for key, value in self.scalars(logs).items():
            self.writer.add_scalar(key, value, step)

    def close(self, model_path) -> None:
        pass


def train(config: dict, resume: str | None = None, run_dir: str | Path | None = None,
          should_stop=None, quiet: bool = False) -> Path:
    """Train with PuffeRL; returns the run directory (final.pt, best.pt, TensorBoard events).

    Nothing is created before the config is checked and PufferLib imported."""
    validate_train_config(config)
    settings = check_pufferl_config(config, resume)
    pufferl = import_pufferl()
    config = pufferl_run_config(config)
    args = config["train"]
    batch_size = num_agents(config) * args["num_steps"]
    num_iterations = max(1, args["total_timesteps"] // batch_size)

    random.seed(args["seed"])
    np.random.seed(args["seed"])
    torch.manual_seed(args["seed"])
    if args["torch_threads"] > 0:
        torch.set_num_threads(args["torch_threads"])
    device = resolve_device(args["device"])

    evaluating = args["eval_interval"] > 0
    heuristic_return = heldout_return(config, policy_factory("heuristic", config)) \
        if evaluating else None
    best_eval_return = -np.inf
    history, eval_history = [], []
    second_key, second_label = get_env_spec(config["base"]["env_name"]).curve_statistic

    with workers_ignore_ctrl_c(config["vec"]["backend"] == "Multiprocessing"):
        vecenv = make_puffer_vecenv(config)
    model = make_policy(config["policy"], vecenv.single_observation_space.shape[0],
                        vecenv.single_action_space.n).to(device)
    run_dir = open_run_dir(config, None, run_dir)
    writer = SummaryWriter(str(run_dir))

    trainer = new_puffer_rl(pufferl, puffer_train_config(config, settings, device,
                                                         num_iterations, run_dir),
                            vecenv, PuffeRLPolicy(model), TensorBoardLogger(writer))
    dashboard = Dashboard(config, num_iterations, batch_size, run_dir, quiet=quiet)
    interrupt = StopOnSignal(run_dir, on_first=lambda message: dashboard.stopping(
        message.split(":")[0] + ": finishing this update, then saving the policy and stopping"))
    iteration = 0
    try:
        with closing(vecenv), writer, interrupt, dashboard:
            for iteration in range(1, num_iterations + 1):
                trainer.evaluate()
                logs = trainer.train()  # PuffeRL logs every 0.25 s at most: None in between
                if logs is not None:
                    losses = TensorBoardLogger.loss_scalars(trainer.losses)
                    for key, value in losses.items():
                        writer.add_scalar(key, value, trainer.global_step)
                    scalars = {**TensorBoardLogger.scalars(logs), **losses}
                    dashboard.update(iteration, trainer.global_step, scalars)
                    if "charts/episodic_return" in scalars:
                        history.append((trainer.global_step, scalars["charts/episodic_return"],
                                        scalars.get(second_key, float("nan"))))
                stopping = interrupt.requested or (should_stop is not None
                                                   and should_stop(iteration))
                if evaluating and (iteration % args["eval_interval"] == 0
                                   or iteration == num_iterations):
                    eval_return = evaluate_greedy(model, config)
                    writer.add_scalar("eval/episodic_return", eval_return, trainer.global_step)
                    writer.add_scalar("eval/heuristic_return", heuristic_return,
                                      trainer.global_step)
                    eval_history.append((trainer.global_step, eval_return))
                    if eval_return > best_eval_return:
                        best_eval_return = eval_return
                        save_atomic(policy_payload(model, config, trainer.global_step, iteration),
                                    run_dir / "best.pt")
                    dashboard.record_eval(eval_return, best_eval_return, heuristic_return)
                if stopping:
                    break
            final = run_dir / ("final.pt" if not interrupt.requested
                               else f"model_{iteration:06d}.pt")
            save_atomic(policy_payload(model, config, trainer.global_step, iteration), final)
    finally:
        trainer.utilization.stop()  # its monitoring thread

    plot_learning_curve(run_dir / "learning_curve.png", run_dir.name, history, eval_history,
                        heuristic_return, 0, second_label)
    if interrupt.requested:
        raise TrainingInterrupted(f"stopped by {interrupt.signal_name} after update {iteration}; "
                                  f"policy: {final} (a pufferl run cannot be resumed)",
                                  run_dir, interrupt.signum)
    return run_dir
