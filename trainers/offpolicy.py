"""What the value-based trainers (DQN, the tabular agent) share: the Q-function as a policy,
epsilon-greedy acting on every agent of the vector env, and the run around the learning rule.

The run is PPO's, tick for tick: an iteration is `[train] num_steps` env steps of every agent,
`eval_interval` and `checkpoint_interval` count iterations, and the run directory holds the same
files (config.ini, command.txt, TensorBoard events, latest.pt with the whole training state,
final.pt, best.pt, model_*.pt, learning_curve.png). A trainer supplies a `Learner`: its `model`
(the Q-function, which `eval` plays greedily), `settings` (start_e, end_e, exploration_fraction)
and `learn(obs, actions, rewards, next_obs, terminals, global_step)` once per env step.
"""
from __future__ import annotations

import random
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from puffer_cluster.config import ConfigError
from puffer_cluster.evaluate import heldout_return
from puffer_cluster.registry import get_env_spec, policy_factory
from puffer_cluster.trainers.checkpoint import load_checkpoint, save_atomic
from puffer_cluster.trainers.curves import plot_learning_curve
from puffer_cluster.trainers.ppo import episode_scalars, evaluate_greedy, flatten_infos, open_run_dir
from puffer_cluster.trainers.training_state import policy_payload, resumed_progress, rng_state, set_rng_state
from puffer_cluster.trainers.stopping import StopOnSignal, workers_ignore_ctrl_c
from puffer_cluster.trainers.train_config import resolve_device, validate_train_config


def make_env(config: dict):
    """The env of the config, from the env registry."""
    return get_env_spec(config["base"]["env_name"]).make_vecenv(config)


class QPolicy(nn.Module):
    """A Q-function playing as a policy: its Q-values are the logits, so `eval`'s greedy
    (argmax) action is the greedy action, and the value is the best Q-value. Subclasses define
    `forward(obs) -> Q (batch, actions)` on the first `obs_size` observation values."""

    is_recurrent = False
    critic_extra = 0

    def initial_state(self, batch: int, device=None):
        return ()

    def act(self, obs, state, episode_start):
        return self(obs), state

    def step(self, obs, state, episode_start):
        q_values = self(obs)
        return q_values, q_values.max(dim=-1).values, state


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """CleanRL's epsilon: from start_e down to end_e over `duration` steps, then end_e."""
    if duration <= 0:
        return end_e
    slope = (end_e - start_e) / duration
    return max(slope * t + start_e, end_e)


def epsilon_greedy(q_values: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Per agent: a uniform random action with probability epsilon, else the argmax."""
    num_agents, num_actions = q_values.shape
    explore = torch.rand(num_agents, device=q_values.device) < epsilon
    random_actions = torch.randint(0, num_actions, (num_agents,), device=q_values.device)
    return torch.where(explore, random_actions, q_values.argmax(dim=-1))


def train_value_based(config: dict, make_learner, resume: str | None = None,
                      run_dir: str | Path | None = None, should_stop=None,
                      quiet: bool = False) -> Path:
    """Train the learner `make_learner(config, obs_size, num_actions, num_agents, device)`
    builds; returns the run directory. Nothing is created before the config, the env and the
    learner are set up. A signal stops the run with `TrainingInterrupted` after saving latest.pt."""
    validate_train_config(config)
    args = config["train"]
    checkpoint = load_checkpoint(resume, require_training_state=True) if resume else None
    if checkpoint is not None:
        trained_by = checkpoint["config"].get("train", {}).get("trainer", "ppo")
        if trained_by != args["trainer"]:
            raise ConfigError(f"--resume: {resume} was written by the {trained_by} trainer, "
                              f"not {args['trainer']}")

    evaluating = args["eval_interval"] > 0
    progress = resumed_progress(checkpoint)
    best_eval_return, heuristic_return = progress["best_eval_return"], progress["heuristic_return"]
    if evaluating and heuristic_return is None:
        heuristic_return = heldout_return(config, policy_factory("heuristic", config))
    history, eval_history = progress["history"], progress["eval_history"]
    second_key, second_label = get_env_spec(config["base"]["env_name"]).curve_statistic

    # Seeding (CleanRL's order) and device.
    random.seed(args["seed"])
    np.random.seed(args["seed"])
    torch.manual_seed(args["seed"])
    torch.backends.cudnn.deterministic = args["torch_deterministic"]
    if args["torch_threads"] > 0:
        torch.set_num_threads(args["torch_threads"])
    device = resolve_device(args["device"])

    with workers_ignore_ctrl_c(config["vec"]["backend"] == "Multiprocessing"):
        vecenv = make_env(config)
    num_agents, num_steps = vecenv.num_agents, args["num_steps"]
    batch_size = num_agents * num_steps
    num_iterations = max(1, args["total_timesteps"] // batch_size)
    total_steps = num_iterations * batch_size
    # The Q-function reads the actor's observation (a privileged critic's extra columns dropped).
    critic_extra = getattr(getattr(vecenv, "driver_env", vecenv), "critic_features", 0)
    obs_size = vecenv.single_observation_space.shape[0] - critic_extra
    try:
        learner = make_learner(config, obs_size, vecenv.single_action_space.n, num_agents, device)
    except BaseException:
        vecenv.close()
        raise
    model, settings = learner.model, learner.settings

    global_step, first_iteration = 0, 1
    vecenv.async_reset(config["vec"]["seed"])
    obs = torch.tensor(vecenv.recv()[0][:, :obs_size], device=device)
    if checkpoint is not None:
        training = checkpoint["training"]
        try:
            model.load_state_dict(checkpoint["model"])
            learner.load_training_state(training["learner"])
        except (RuntimeError, ValueError) as error:
            vecenv.close()
            reason = str(error).splitlines()[0]
            raise ConfigError(f"--resume cannot change the network or the env's shapes "
                              f"({reason})") from None
        global_step, first_iteration = checkpoint["global_step"], checkpoint["iteration"] + 1
        set_rng_state(training["rng"], device)
        if hasattr(vecenv, "load_state_dict") and "env" in training:
            vecenv.load_state_dict(training["env"])
            obs = torch.tensor(vecenv.observations[:, :obs_size], device=device)
        elif not quiet:
            print("note: the env state of a Serial/Multiprocessing run is not saved; "
                  "the envs restart from their seeds")

    run_dir = open_run_dir(config, resume, run_dir)
    saved_iteration = checkpoint["iteration"] if checkpoint else None

    def save_training_checkpoint(iteration: int) -> None:
        payload = policy_payload(model, config, global_step, iteration)
        payload["kind"] = "training"
        payload["training"] = {
            "learner": learner.training_state(), "rng": rng_state(device),
            "best_eval_return": best_eval_return, "heuristic_return": heuristic_return,
            "history": history, "eval_history": eval_history,
        }
        if hasattr(vecenv, "state_dict"):
            payload["training"]["env"] = vecenv.state_dict()
        save_atomic(payload, run_dir / "latest.pt")
        interrupt.saved_iteration = iteration

    writer = SummaryWriter(str(run_dir))
    interrupt = StopOnSignal(run_dir, saved_iteration, None if quiet else print)
    start_time, start_step, last_print = time.time(), global_step, 0.0
    iteration = first_iteration - 1
    with closing(vecenv), writer, interrupt:
        for iteration in range(first_iteration, num_iterations + 1):
            episode_infos, losses = [], {}
            for _ in range(num_steps):
                epsilon = linear_schedule(settings.start_e, settings.end_e,
                                          settings.exploration_fraction * total_steps, global_step)
                with torch.no_grad():
                    actions = epsilon_greedy(model(obs), epsilon)
                vecenv.send(actions.cpu().numpy().astype(np.int32))
                next_obs, rewards, terminals, truncations, infos, _, _ = vecenv.recv()
                global_step += num_agents
                next_obs = torch.tensor(next_obs[:, :obs_size], device=device)
                # A time limit is not an end (Pardo et al., 2018): a truncated transition
                # bootstraps, from its own observation, the last of its episode that the env's
                # auto-reset leaves (next_obs is the new episode's first); a terminal one does not.
                truncated = torch.as_tensor(truncations, device=device)
                bootstrap_obs = torch.where(truncated[:, None], obs, next_obs)
                losses = learner.learn(obs, actions, torch.as_tensor(rewards, device=device),
                                       bootstrap_obs, torch.as_tensor(terminals, device=device),
                                       global_step) or losses
                obs = next_obs
                episode_infos.extend(flatten_infos(infos))

            # Record.
            sps = int((global_step - start_step) / max(time.time() - start_time, 1e-9))
            scalars = {"charts/epsilon": epsilon, "charts/SPS": sps, **losses}
            if episode_infos:
                scalars.update(episode_scalars(episode_infos))
                history.append((global_step, scalars["charts/episodic_return"],
                                scalars.get(second_key, float("nan"))))
            for key, value in scalars.items():
                writer.add_scalar(key, value, global_step)
            if not quiet and time.time() - last_print >= args["print_interval"]:
                last_print = time.time()
                shown = scalars.get("charts/episodic_return")
                print(f"{args['trainer']} update {iteration}/{num_iterations} step {global_step:,} "
                      f"epsilon {epsilon:.3f} return {'-' if shown is None else f'{shown:+.3f}'} "
                      f"SPS {scalars['charts/SPS']:,}", flush=True)

            stopping = interrupt.requested or (should_stop is not None and should_stop(iteration))
            if evaluating and (iteration % args["eval_interval"] == 0 or iteration == num_iterations):
                eval_return = evaluate_greedy(model, config)
                writer.add_scalar("eval/episodic_return", eval_return, global_step)
                writer.add_scalar("eval/heuristic_return", heuristic_return, global_step)
                eval_history.append((global_step, eval_return))
                if eval_return > best_eval_return:
                    best_eval_return = eval_return
                    save_atomic(policy_payload(model, config, global_step, iteration),
                                run_dir / "best.pt")
            if iteration % args["checkpoint_interval"] == 0 or stopping:
                save_training_checkpoint(iteration)
                save_atomic(policy_payload(model, config, global_step, iteration),
                            run_dir / f"model_{iteration:06d}.pt")
            if stopping:
                break
        else:
            save_training_checkpoint(iteration)
            save_atomic(policy_payload(model, config, global_step, iteration), run_dir / "final.pt")

    plot_learning_curve(run_dir / "learning_curve.png", run_dir.name, history, eval_history,
                        heuristic_return, 0, second_label)
    if interrupt.requested:
        raise interrupt.interrupted(f"stopped by {interrupt.signal_name} after update {iteration}")
    return run_dir
