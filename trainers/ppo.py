"""PPO in the spirit of CleanRL's `ppo.py`: `train()` reads top to bottom.

Rollouts come straight from the PufferLib vector env's buffers; then GAE, a clipped policy
loss, a clipped value loss, an entropy bonus, advantage normalisation, learning-rate annealing,
gradient clipping, minibatches and epochs, all from the `[train]` config section. The env is
the registry's spec of `[base] env_name` (`puffer_cluster.registry`).
"""
from __future__ import annotations

import random
import shlex
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.distributions.categorical import Categorical
from torch.utils.tensorboard import SummaryWriter

from puffer_cluster.config import save_config
from puffer_cluster.evaluate import heldout_return
from puffer_cluster.policies import ModelPolicy
from puffer_cluster.registry import get_env_spec, policy_factory
from puffer_cluster.trainers.checkpoint import load_checkpoint, remove_partial_files, save_atomic
from puffer_cluster.trainers.curves import plot_learning_curve
from puffer_cluster.trainers.dashboard import Dashboard
from puffer_cluster.trainers.models import make_policy
from puffer_cluster.trainers.stopping import StopOnSignal, workers_ignore_ctrl_c
from puffer_cluster.trainers.train_config import resolve_device, validate_train_config
from puffer_cluster.trainers.training_state import (
    policy_payload, restore_training_state, resumed_progress, save_training_state,
)


# --- The pieces of the PPO loss, small enough to check by hand -------------------------------

def compute_gae(rewards, values, episode_starts, next_value, next_episode_start, gamma, gae_lambda):
    """Generalised advantage estimates over a rollout of shape (T, N).

    `episode_starts[t]` marks obs[t] as the first of an episode (the previous step ended one),
    so the bootstrap from t+1 into t is cut there.
    """
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        if t == rewards.shape[0] - 1:
            next_nonterminal = 1.0 - next_episode_start.to(rewards.dtype)
            next_values = next_value
        else:
            next_nonterminal = 1.0 - episode_starts[t + 1].to(rewards.dtype)
            next_values = values[t + 1]
        delta = rewards[t] + gamma * next_values * next_nonterminal - values[t]
        last_gae = delta + gamma * gae_lambda * next_nonterminal * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


def normalize_advantages(advantages):
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def clipped_policy_loss(ratio, advantages, clip_coef):
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    return torch.max(unclipped, clipped).mean()


def value_loss(new_values, returns, old_values, clip_coef, clip_vloss):
    if not clip_vloss:
        return 0.5 * ((new_values - returns) ** 2).mean()
    unclipped = (new_values - returns) ** 2
    clipped_values = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
    clipped = (clipped_values - returns) ** 2
    return 0.5 * torch.max(unclipped, clipped).mean()


def explained_variance(predicted, target) -> float:
    variance = np.var(target)
    return float("nan") if variance == 0 else float(1 - np.var(target - predicted) / variance)


# --- The pieces of the loop ------------------------------------------------------------------

@dataclass
class Rollout:
    """num_steps steps of every agent: what PPO learns from."""
    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    episode_starts: torch.Tensor
    values: torch.Tensor
    teacher_actions: torch.Tensor

    @classmethod
    def zeros(cls, num_steps: int, num_agents: int, obs_size: int, device) -> "Rollout":
        shape = (num_steps, num_agents)
        return cls(obs=torch.zeros((*shape, obs_size), device=device),
                   actions=torch.zeros(shape, dtype=torch.long, device=device),
                   logprobs=torch.zeros(shape, device=device),
                   rewards=torch.zeros(shape, device=device),
                   episode_starts=torch.zeros(shape, dtype=torch.bool, device=device),
                   values=torch.zeros(shape, device=device),
                   teacher_actions=torch.zeros(shape, dtype=torch.long, device=device))


def flat(x: torch.Tensor) -> torch.Tensor:
    """(T, N, ...) -> (T * N, ...): time-major, as the minibatch indices count."""
    return x.reshape(-1, *x.shape[2:])


def teacher_weight(iteration: int, cloning_iterations: int, teacher_iterations: float,
                   args: dict) -> float:
    """The distillation loss's weight: `teacher_coef` while cloning, then fading linearly to
    `teacher_final_coef` over `teacher_iterations` updates, then held."""
    since = max(0, iteration - 1 - cloning_iterations)
    fade = min(1.0, since / teacher_iterations) if teacher_iterations > 0 else 1.0
    return args["teacher_coef"] + fade * (args["teacher_final_coef"] - args["teacher_coef"])


def minibatch_indices(num_steps: int, num_agents: int, num_minibatches: int, recurrent: bool,
                      device) -> list[torch.Tensor]:
    """One epoch's shuffled minibatches: indices into the flattened batch or, for a recurrent
    policy, agents (whole sequences, so the LSTM replays them in order)."""
    if recurrent:
        per_minibatch = max(1, num_agents // num_minibatches)
        order = torch.randperm(num_agents, device=device)
        return [order[i:i + per_minibatch] for i in range(0, num_agents, per_minibatch)]
    batch_size = num_steps * num_agents
    per_minibatch = batch_size // num_minibatches
    order = torch.randperm(batch_size, device=device)
    return [order[i:i + per_minibatch] for i in range(0, batch_size, per_minibatch)]


def minibatch_forward(agent: nn.Module, rollout: Rollout, mb: torch.Tensor, initial_state):
    """The policy's new logits and values on minibatch `mb`, flattened, and their indices into
    the flattened batch."""
    if not agent.is_recurrent:
        logits, values, _ = agent.step(flat(rollout.obs)[mb], (), None)
        return logits, values, mb
    num_steps, num_agents = rollout.episode_starts.shape
    state = tuple(s[mb] for s in initial_state)
    logits, values = agent.unroll(rollout.obs[:, mb], state, rollout.episode_starts[:, mb])
    index = (torch.arange(num_steps, device=mb.device)[:, None] * num_agents
             + mb[None, :]).reshape(-1)
    return flat(logits), flat(values), index


def ppo_update(agent: nn.Module, optimizer, rollout: Rollout, advantages, returns,
               initial_state, teacher_coef: float, has_teacher: bool, cloning: bool, args: dict,
               autocast: dict) -> dict:
    """Epochs of minibatch steps on the rollout; the last minibatch's losses as scalars."""
    b_actions, b_logprobs, b_teacher = flat(rollout.actions), flat(rollout.logprobs), \
        flat(rollout.teacher_actions)
    b_advantages, b_returns, b_values = flat(advantages), flat(returns), flat(rollout.values)
    num_steps, num_agents = rollout.rewards.shape
    clipfracs = []
    for _ in range(args["update_epochs"]):
        for mb in minibatch_indices(num_steps, num_agents, args["num_minibatches"],
                                    agent.is_recurrent, b_actions.device):
            with torch.autocast(**autocast):
                new_logits, new_values, index = minibatch_forward(agent, rollout, mb, initial_state)
            distribution = Categorical(logits=new_logits.float())
            log_ratio = distribution.log_prob(b_actions[index]) - b_logprobs[index]
            ratio = log_ratio.exp()
            with torch.no_grad():
                old_approx_kl = (-log_ratio).mean()
                approx_kl = ((ratio - 1) - log_ratio).mean()
                clipfracs.append(((ratio - 1.0).abs() > args["clip_coef"]).float().mean().item())
            mb_advantages = b_advantages[index]
            if args["norm_adv"]:
                mb_advantages = normalize_advantages(mb_advantages)
            pg_loss = clipped_policy_loss(ratio, mb_advantages, args["clip_coef"])
            v_loss = value_loss(new_values.float(), b_returns[index], b_values[index],
                                args["clip_coef"], args["clip_vloss"])
            entropy_loss = distribution.entropy().mean()
            teacher_loss = nn.functional.cross_entropy(new_logits.float(), b_teacher[index]) \
                if has_teacher else torch.zeros((), device=b_actions.device)
            if cloning:  # off-policy data: no policy-gradient term
                loss = teacher_coef * teacher_loss + v_loss * args["vf_coef"]
            else:
                loss = pg_loss - args["ent_coef"] * entropy_loss + v_loss * args["vf_coef"] \
                    + teacher_coef * teacher_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args["max_grad_norm"])
            optimizer.step()
        if args["target_kl"] > 0 and approx_kl > args["target_kl"]:
            break
    return {"losses/teacher_loss": teacher_loss.item(), "losses/value_loss": v_loss.item(),
            "losses/policy_loss": pg_loss.item(), "losses/entropy": entropy_loss.item(),
            "losses/old_approx_kl": old_approx_kl.item(), "losses/approx_kl": approx_kl.item(),
            "losses/clipfrac": float(np.mean(clipfracs)),
            "losses/explained_variance": explained_variance(b_values.cpu().numpy(),
                                                            b_returns.cpu().numpy())}


def flatten_infos(infos) -> list[dict]:
    """PufferLib backends return a list of dicts, or one list per worker."""
    flat_infos = []
    for item in infos or []:
        flat_infos.extend(flatten_infos(item) if isinstance(item, list) else [item])
    return flat_infos


def episode_scalars(infos: list[dict]) -> dict:
    """`environment/<statistic>`: the infos' episode statistics averaged over their episodes
    (each info holds the mean of `n` episodes), and CleanRL's episodic return and length."""
    episodes = sum(info.get("n", 1) for info in infos)
    scalars = {f"environment/{key}": sum(info[key] * info.get("n", 1) for info in infos) / episodes
               for key in infos[0] if key != "n"}
    scalars["charts/episodic_return"] = scalars["environment/episode_return"]
    scalars["charts/episodic_length"] = scalars["environment/episode_length"]
    return scalars


# --- Run directory and held-out evaluation -----------------------------------------------------

def new_run_dir(config: dict) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{config['base']['env_name']}__{config['train']['name']}__{config['train']['seed']}__{stamp}"
    run_dir = Path(config["train"]["data_dir"]) / name
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def open_run_dir(config: dict, resume: str | None, run_dir: str | Path | None) -> Path:
    """The run directory with the resolved config.ini and the command in command.txt: a new one,
    or the resumed run's (its command.txt gains a line; a killed save's temporary files go)."""
    run_dir = Path(run_dir) if run_dir else (Path(resume).parent if resume else new_run_dir(config))
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        for path in remove_partial_files(run_dir):
            print(f"note: removed {path.name}, the remains of a checkpoint save that was killed")
    save_config(config, run_dir / "config.ini")
    with open(run_dir / "command.txt", "a" if resume else "w") as f:
        f.write(shlex.join(sys.argv) + "\n")
    return run_dir


def evaluate_greedy(agent: nn.Module, config: dict) -> float:
    """The held-out return of the network acting greedily (`evaluate.heldout_return`)."""
    agent.eval()
    try:
        return heldout_return(config, lambda n, params: ModelPolicy(agent, n, greedy=True))
    finally:
        agent.train()


# --- Training ---------------------------------------------------------------------------------

def train(config: dict, resume: str | None = None, run_dir: str | Path | None = None,
          should_stop=None, quiet: bool = False) -> Path:
    """Train PPO; returns the run directory (final.pt, latest.pt, TensorBoard events, curve).

    Nothing is created before the config is checked and the env, the network and the held-out
    reference are set up. A signal stops the run with `TrainingInterrupted` (see StopOnSignal)."""
    validate_train_config(config)
    spec = get_env_spec(config["base"]["env_name"])
    args = config["train"]
    checkpoint = load_checkpoint(resume, require_training_state=True) if resume else None

    # Model selection: the greedy policy is scored on held-out episodes; the best becomes best.pt.
    # The heuristic on the same episodes is the curve's reference line (computed once per run).
    evaluating = args["eval_interval"] > 0
    progress = resumed_progress(checkpoint)
    if evaluating and progress["heuristic_return"] is None:
        progress["heuristic_return"] = heldout_return(config, policy_factory("heuristic", config))
    second_key, second_label = spec.curve_statistic

    # Seeding (CleanRL's order) and device.
    random.seed(args["seed"])
    np.random.seed(args["seed"])
    torch.manual_seed(args["seed"])
    torch.backends.cudnn.deterministic = args["torch_deterministic"]
    if args["torch_threads"] > 0:
        torch.set_num_threads(args["torch_threads"])
    device = resolve_device(args["device"])
    autocast = dict(device_type=device.type, dtype=torch.bfloat16,
                    enabled=args["precision"] == "bfloat16")

    with workers_ignore_ctrl_c(config["vec"]["backend"] == "Multiprocessing"):
        vecenv = spec.make_vecenv(config)
    native = getattr(vecenv, "driver_env", vecenv)  # one copy, for Serial/Multiprocessing
    num_agents = vecenv.num_agents
    num_steps = args["num_steps"]
    batch_size = num_agents * num_steps
    num_iterations = max(1, args["total_timesteps"] // batch_size)

    obs_size = vecenv.single_observation_space.shape[0]  # the actor's, + privileged critic columns
    critic_extra = getattr(native, "critic_features", 0) if spec.privileged_critic else 0
    agent = make_policy(config["policy"], obs_size - critic_extra, vecenv.single_action_space.n,
                        critic_extra).to(device)
    # Kickstarting: a teacher's actions add a distillation loss that fades out over training.
    teacher = policy_factory(args["teacher"], config)(num_agents, native.params) \
        if args["teacher"] != "none" else None
    # Behaviour cloning first: the teacher acts, the policy imitates it, the value regresses.
    cloning_iterations = int(args["teacher_clone_fraction"] * num_iterations) if teacher else 0
    teacher_iterations = args["teacher_fraction"] * num_iterations
    optimizer = torch.optim.Adam(agent.parameters(), lr=args["learning_rate"], eps=1e-5)
    forward = torch.compile(agent.step) if args["compile"] else agent.step
    rollout = Rollout.zeros(num_steps, num_agents, obs_size, device)

    # Start the game, or continue where the checkpoint stopped.
    global_step, first_iteration = 0, 1
    vecenv.async_reset(config["vec"]["seed"])
    next_obs_buffer = vecenv.recv()[0]
    carry = {"next_episode_start": torch.ones(num_agents, dtype=torch.bool, device=device),
             "policy_state": agent.initial_state(num_agents, device)}
    if checkpoint is not None:
        global_step, first_iteration = checkpoint["global_step"], checkpoint["iteration"] + 1
        restored = restore_training_state(checkpoint, agent, optimizer, vecenv, device)
        if restored is not None:
            carry, next_obs_buffer = restored, vecenv.observations
        elif not quiet:
            print("note: the env state of a Serial/Multiprocessing run is not saved; "
                  "the envs restart from their seeds")
    next_obs = torch.as_tensor(next_obs_buffer, device=device)
    next_episode_start, policy_state = carry["next_episode_start"], carry["policy_state"]

    run_dir = open_run_dir(config, resume, run_dir)
    writer = SummaryWriter(str(run_dir))
    best = progress["best_eval_return"]
    dashboard = Dashboard(config, num_iterations, batch_size, run_dir, cloning_iterations,
                          first_iteration, global_step, best if np.isfinite(best) else None,
                          progress["heuristic_return"], quiet)
    interrupt = StopOnSignal(run_dir, checkpoint["iteration"] if checkpoint else None,
                             dashboard.stopping)
    start_time, start_step = time.time(), global_step
    iteration = first_iteration - 1
    with closing(vecenv), writer, interrupt, dashboard:
        for iteration in range(first_iteration, num_iterations + 1):
            if args["anneal_lr"]:
                frac = 1.0 - (iteration - 1.0) / num_iterations
                optimizer.param_groups[0]["lr"] = frac * args["learning_rate"]

            # Rollout: num_steps steps of every agent.
            cloning = iteration <= cloning_iterations
            initial_policy_state = tuple(s.clone() for s in policy_state)
            episode_infos = []
            for step in range(num_steps):
                global_step += num_agents
                rollout.obs[step] = next_obs
                rollout.episode_starts[step] = next_episode_start
                if teacher is not None:
                    rollout.teacher_actions[step] = torch.as_tensor(
                        teacher(next_obs_buffer, next_episode_start.cpu().numpy()), device=device)
                with torch.no_grad(), torch.autocast(**autocast):
                    logits, value, policy_state = forward(next_obs, policy_state, next_episode_start)
                    distribution = Categorical(logits=logits.float())
                    action = rollout.teacher_actions[step] if cloning else distribution.sample()
                rollout.actions[step] = action
                rollout.logprobs[step] = distribution.log_prob(action)
                rollout.values[step] = value.float()
                vecenv.send(action.cpu().numpy().astype(np.int32))
                next_obs_buffer, step_rewards, terminals, truncations, infos, _, _ = vecenv.recv()
                rollout.rewards[step] = torch.as_tensor(step_rewards, device=device)
                next_episode_start = torch.as_tensor(terminals | truncations, device=device)
                next_obs = torch.as_tensor(next_obs_buffer, device=device)
                episode_infos.extend(flatten_infos(infos))

            # Advantages.
            with torch.no_grad(), torch.autocast(**autocast):
                next_value = forward(next_obs, policy_state, next_episode_start)[1].float()
            advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.episode_starts,
                                              next_value, next_episode_start, args["gamma"],
                                              args["gae_lambda"])

            # Optimise the policy and value network.
            teacher_coef = teacher_weight(iteration, cloning_iterations, teacher_iterations, args) \
                if teacher is not None else 0.0
            losses = ppo_update(agent, optimizer, rollout, advantages, returns,
                                initial_policy_state, teacher_coef, teacher is not None, cloning,
                                args, autocast)

            # Record.
            sps = int((global_step - start_step) / max(time.time() - start_time, 1e-9))
            scalars = {"charts/learning_rate": optimizer.param_groups[0]["lr"],
                       "charts/teacher_coef": teacher_coef, "charts/SPS": sps, **losses}
            if episode_infos:
                scalars.update(episode_scalars(episode_infos))
                progress["history"].append((global_step, scalars["charts/episodic_return"],
                                            scalars.get(second_key, float("nan"))))
            for key, value in scalars.items():
                writer.add_scalar(key, value, global_step)
            dashboard.update(iteration, global_step, scalars)

            stopping = interrupt.requested or (should_stop is not None and should_stop(iteration))
            if evaluating and (iteration % args["eval_interval"] == 0 or iteration == num_iterations):
                eval_return = evaluate_greedy(agent, config)
                writer.add_scalar("eval/episodic_return", eval_return, global_step)
                writer.add_scalar("eval/heuristic_return", progress["heuristic_return"], global_step)
                progress["eval_history"].append((global_step, eval_return))
                if eval_return > progress["best_eval_return"]:
                    progress["best_eval_return"] = eval_return
                    save_atomic(policy_payload(agent, config, global_step, iteration),
                                run_dir / "best.pt")
                dashboard.record_eval(eval_return, progress["best_eval_return"],
                                      progress["heuristic_return"])
            if iteration % args["checkpoint_interval"] == 0 or stopping:
                save_training_state(run_dir / "latest.pt", agent, optimizer, vecenv, config,
                                    global_step, iteration, {"next_episode_start": next_episode_start,
                                                             "policy_state": policy_state}, progress)
                interrupt.saved_iteration = iteration
                save_atomic(policy_payload(agent, config, global_step, iteration),
                            run_dir / f"model_{iteration:06d}.pt")
            if stopping:
                break
        else:
            save_training_state(run_dir / "latest.pt", agent, optimizer, vecenv, config,
                                global_step, iteration, {"next_episode_start": next_episode_start,
                                                         "policy_state": policy_state}, progress)
            interrupt.saved_iteration = iteration
            save_atomic(policy_payload(agent, config, global_step, iteration), run_dir / "final.pt")

    plot_learning_curve(run_dir / "learning_curve.png", run_dir.name, progress["history"],
                        progress["eval_history"], progress["heuristic_return"],
                        cloning_iterations * batch_size, second_label)
    if interrupt.requested:
        raise interrupt.interrupted(f"stopped by {interrupt.signal_name} after update {iteration}")
    return run_dir
