"""PPO for the gardener, in the spirit of CleanRL's `ppo.py`: one file, read top to bottom.

Rollouts come straight from the PufferLib vector env's buffers; then GAE, a clipped policy
loss, a clipped value loss, an entropy bonus, advantage normalisation, learning-rate annealing,
gradient clipping, minibatches and epochs, all from the `[train]` config section.
"""
from __future__ import annotations

import random
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pufferlib.vector
import torch
from torch import nn
from torch.distributions.categorical import Categorical
from torch.utils.tensorboard import SummaryWriter

from puffer_cluster.config import ConfigError, save_config, world_config
from puffer_cluster.env import GardenerEnv, world_params
from puffer_cluster.evaluate import play_episodes
from puffer_cluster.policies import HeuristicPolicy, ModelPolicy
from trainers.checkpoint import load_checkpoint, save_atomic
from trainers.curves import plot_learning_curve
from trainers.dashboard import Dashboard
from trainers.models import make_policy

VEC_BACKENDS = ("PufferEnv", "Serial", "Multiprocessing")


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


# --- Environment, device, run directory -------------------------------------------------------

def make_vecenv(config: dict):
    """The env of the `[vec]` section: the native env, or Serial/Multiprocessing copies of it."""
    if config["base"]["env_name"] == "simarena":  # SimArena hook: its own env (issue 6)
        from puffer_cluster.simarena import make_simarena_vecenv
        return make_simarena_vecenv(config)
    if config["base"]["env_name"] == "cluster_ops":  # ClusterOps hook: its own env
        from puffer_cluster.cluster_ops import make_vecenv as make_cluster_ops_vecenv
        return make_cluster_ops_vecenv(config)
    vec = config["vec"]
    if config["policy"]["critic"] not in ("plain", "privileged"):
        raise ConfigError(f"policy.critic must be plain or privileged, got {config['policy']['critic']!r}")
    env_kwargs = dict(num_envs=config["env"]["num_envs"], log_interval=config["env"]["log_interval"],
                      critic_features=config["policy"]["critic"] == "privileged",
                      **world_config(config))
    backend = vec["backend"]
    if backend == "PufferEnv":
        return GardenerEnv(seed=vec["seed"], **env_kwargs)
    if backend not in VEC_BACKENDS:
        raise ConfigError(f"vec.backend must be one of {', '.join(VEC_BACKENDS)}, got {backend!r}")
    extra = {}
    if backend == "Multiprocessing":
        extra = dict(num_workers=vec["num_workers"], batch_size=vec["num_envs"])
    return pufferlib.vector.make(GardenerEnv, backend=getattr(pufferlib.vector, backend),
                                 num_envs=vec["num_envs"], env_kwargs=env_kwargs,
                                 seed=vec["seed"], **extra)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available")
    return device


def flatten_infos(infos) -> list[dict]:
    """PufferLib backends return a list of dicts, or one list per worker."""
    flat = []
    for item in infos or []:
        flat.extend(flatten_infos(item) if isinstance(item, list) else [item])
    return flat


def new_run_dir(config: dict) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{config['base']['env_name']}__{config['train']['name']}__{config['train']['seed']}__{stamp}"
    run_dir = Path(config["train"]["data_dir"]) / name
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def policy_payload(agent: nn.Module, config: dict, global_step: int, iteration: int) -> dict:
    """What evaluation needs: small enough to ship (no optimizer, no env state)."""
    return {"format": "puffer-cluster", "kind": "policy", "config": config,
            "model": {k: v.detach().cpu() for k, v in agent.state_dict().items()},
            "critic_extra": agent.critic_extra,
            "global_step": global_step, "iteration": iteration}


def evaluate_greedy(agent: nn.Module, config: dict) -> float:
    """Mean return of the greedy policy on the first episodes of `[train] eval_episodes` grids
    seeded `eval_seed` (held out: not the benchmark's seeds)."""
    args = config["train"]
    agent.eval()
    stats = play_episodes(lambda n, params: ModelPolicy(agent, n, greedy=True),
                          args["eval_episodes"], args["eval_seed"], world_config(config))
    agent.train()
    return float(stats[:, 0].mean())


def rng_state(device: torch.device) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class StopOnSignal:
    """First Ctrl-C: finish the current update, save, exit. Second: stop at once."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
        self.previous = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


# --- Training ---------------------------------------------------------------------------------

def train(config: dict, resume: str | None = None, run_dir: str | Path | None = None,
          should_stop=None, quiet: bool = False) -> Path:
    """Train PPO; returns the run directory (final.pt, latest.pt, TensorBoard events, curve)."""
    args = config["train"]
    checkpoint = load_checkpoint(resume, require_training_state=True) if resume else None
    run_dir = Path(run_dir) if run_dir else (Path(resume).parent if resume else new_run_dir(config))
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.ini")
    (run_dir / "command.txt").write_text(shlex.join(sys.argv) + "\n")

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
    if args["precision"] not in ("float32", "bfloat16"):
        raise ConfigError(f"train.precision must be float32 or bfloat16, got {args['precision']!r}")

    vecenv = make_vecenv(config)
    num_agents = vecenv.num_agents
    num_steps = args["num_steps"]
    batch_size = num_agents * num_steps
    minibatch_size = batch_size // args["num_minibatches"]
    num_iterations = max(1, args["total_timesteps"] // batch_size)

    obs_size = vecenv.single_observation_space.shape[0]  # OBS_SIZE (+ critic features), or SimArena's
    critic_extra = getattr(getattr(vecenv, "driver_env", vecenv), "critic_features", 0)
    agent = make_policy(config["policy"], obs_size - critic_extra, vecenv.single_action_space.n,
                        critic_extra).to(device)
    # Kickstarting: a teacher's actions add a distillation loss that fades out over training.
    if args["teacher"] not in ("none", "heuristic"):
        raise ConfigError(f"train.teacher must be none or heuristic, got {args['teacher']!r}")
    teacher = HeuristicPolicy(num_agents, world_params(world_config(config)), config["heuristic"]) \
        if args["teacher"] == "heuristic" else None
    # Behaviour cloning first: the teacher acts, the policy imitates it, the value regresses.
    cloning_iterations = int(args["teacher_clone_fraction"] * num_iterations) if teacher else 0
    teacher_iterations = args["teacher_fraction"] * num_iterations
    optimizer = torch.optim.Adam(agent.parameters(), lr=args["learning_rate"], eps=1e-5)
    forward = torch.compile(agent.step) if args["compile"] else agent.step

    # Rollout storage.
    obs = torch.zeros((num_steps, num_agents, obs_size), device=device)
    actions = torch.zeros((num_steps, num_agents), dtype=torch.long, device=device)
    logprobs = torch.zeros((num_steps, num_agents), device=device)
    rewards = torch.zeros((num_steps, num_agents), device=device)
    episode_starts = torch.zeros((num_steps, num_agents), dtype=torch.bool, device=device)
    values = torch.zeros((num_steps, num_agents), device=device)
    teacher_actions = torch.zeros((num_steps, num_agents), dtype=torch.long, device=device)

    # Start the game.
    global_step, first_iteration = 0, 1
    vecenv.async_reset(config["vec"]["seed"])
    next_obs_buffer = vecenv.recv()[0]
    next_obs = torch.as_tensor(next_obs_buffer, device=device)
    next_episode_start = torch.ones(num_agents, dtype=torch.bool, device=device)
    policy_state = agent.initial_state(num_agents, device)
    if checkpoint is not None:
        training = checkpoint["training"]
        agent.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(training["optimizer"])
        global_step, first_iteration = checkpoint["global_step"], checkpoint["iteration"] + 1
        set_rng_state(training["rng"], device)
        if isinstance(vecenv, GardenerEnv):
            for name, array in training["env_state"].items():
                getattr(vecenv.state, name)[...] = array
            vecenv.tick = training["env_tick"]
            vecenv.observations[...] = training["next_obs"]
            next_obs = torch.as_tensor(vecenv.observations, device=device)
            next_episode_start = training["next_episode_start"].to(device)
            next_obs_buffer = vecenv.observations
            policy_state = tuple(s.to(device) for s in training["policy_state"])
        elif not quiet:
            print("note: the env state of a Serial/Multiprocessing run is not saved; "
                  "the envs restart from their seeds")

    # Model selection: the greedy policy is scored on held-out seeds; the best becomes best.pt.
    evaluating = args["eval_interval"] > 0 and config["base"]["env_name"] == "gardener"
    best_eval_return = checkpoint["training"].get("best_eval_return", -np.inf) if checkpoint \
        else -np.inf

    def save_training_checkpoint(iteration: int) -> None:
        payload = policy_payload(agent, config, global_step, iteration)
        payload["kind"] = "training"
        payload["training"] = {
            "optimizer": optimizer.state_dict(), "rng": rng_state(device),
            "next_episode_start": next_episode_start.cpu(),
            "policy_state": tuple(s.detach().cpu() for s in policy_state),
            "best_eval_return": best_eval_return,
        }
        if isinstance(vecenv, GardenerEnv):
            payload["training"].update(
                env_state={k: v.copy() for k, v in vecenv.state._asdict().items()},
                env_tick=vecenv.tick, next_obs=vecenv.observations.copy())
        save_atomic(payload, run_dir / "latest.pt")

    writer = SummaryWriter(str(run_dir))
    dashboard = Dashboard(config, num_iterations, batch_size, quiet=quiet)
    history = []  # (global_step, episodic_return, oom_rate) for the learning curve
    start_time, start_step = time.time(), global_step
    iteration = first_iteration - 1
    with StopOnSignal() as interrupt, dashboard:
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
                obs[step] = next_obs
                episode_starts[step] = next_episode_start
                if teacher is not None:
                    teacher_actions[step] = torch.as_tensor(
                        teacher(next_obs_buffer, next_episode_start.cpu().numpy()), device=device)
                with torch.no_grad(), torch.autocast(**autocast):
                    logits, value, policy_state = forward(next_obs, policy_state, next_episode_start)
                    distribution = Categorical(logits=logits.float())
                    action = teacher_actions[step] if cloning else distribution.sample()
                actions[step] = action
                logprobs[step] = distribution.log_prob(action)
                values[step] = value.float()
                vecenv.send(action.cpu().numpy().astype(np.int32))
                step_obs, step_rewards, terminals, truncations, infos, _, _ = vecenv.recv()
                rewards[step] = torch.as_tensor(step_rewards, device=device)
                next_episode_start = torch.as_tensor(terminals | truncations, device=device)
                next_obs_buffer = step_obs
                next_obs = torch.as_tensor(step_obs, device=device)
                episode_infos.extend(flatten_infos(infos))

            # Advantages.
            with torch.no_grad(), torch.autocast(**autocast):
                next_value = forward(next_obs, policy_state, next_episode_start)[1].float()
            advantages, returns = compute_gae(rewards, values, episode_starts, next_value,
                                              next_episode_start, args["gamma"], args["gae_lambda"])

            # Optimise the policy and value network.
            flat = lambda x: x.reshape(-1, *x.shape[2:])
            b_actions, b_logprobs, b_teacher = flat(actions), flat(logprobs), flat(teacher_actions)
            teacher_coef = 0.0
            if teacher is not None:
                since = max(0, iteration - 1 - cloning_iterations)
                fade = min(1.0, since / teacher_iterations) if teacher_iterations > 0 else 1.0
                teacher_coef = args["teacher_coef"] + fade * (args["teacher_final_coef"] - args["teacher_coef"])
            b_advantages, b_returns, b_values = flat(advantages), flat(returns), flat(values)
            clipfracs = []
            agents_per_minibatch = max(1, num_agents // args["num_minibatches"])
            for epoch in range(args["update_epochs"]):
                if agent.is_recurrent:  # whole sequences, so the LSTM replays them in order
                    agent_order = torch.randperm(num_agents, device=device)
                    minibatches = [agent_order[i:i + agents_per_minibatch]
                                   for i in range(0, num_agents, agents_per_minibatch)]
                else:
                    order = torch.randperm(batch_size, device=device)
                    minibatches = [order[i:i + minibatch_size]
                                   for i in range(0, batch_size, minibatch_size)]
                for mb in minibatches:
                    with torch.autocast(**autocast):
                        if agent.is_recurrent:
                            mb_state = tuple(s[mb] for s in initial_policy_state)
                            new_logits, new_values = agent.unroll(obs[:, mb], mb_state,
                                                                  episode_starts[:, mb])
                            new_logits, new_values = flat(new_logits), flat(new_values)
                            index = (torch.arange(num_steps, device=device)[:, None] * num_agents
                                     + mb[None, :]).reshape(-1)
                        else:
                            new_logits, new_values, _ = agent.step(flat(obs)[mb], (), None)
                            index = mb
                    distribution = Categorical(logits=new_logits.float())
                    new_logprob = distribution.log_prob(b_actions[index])
                    log_ratio = new_logprob - b_logprobs[index]
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
                        if teacher is not None else torch.zeros((), device=device)
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

            # Record.
            sps = int((global_step - start_step) / max(time.time() - start_time, 1e-9))
            scalars = {
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
                "charts/teacher_coef": teacher_coef,
                "losses/teacher_loss": teacher_loss.item(),
                "charts/SPS": sps,
                "losses/value_loss": v_loss.item(), "losses/policy_loss": pg_loss.item(),
                "losses/entropy": entropy_loss.item(), "losses/old_approx_kl": old_approx_kl.item(),
                "losses/approx_kl": approx_kl.item(), "losses/clipfrac": float(np.mean(clipfracs)),
                "losses/explained_variance": explained_variance(b_values.cpu().numpy(),
                                                                b_returns.cpu().numpy()),
            }
            if episode_infos:
                episodes = sum(info.get("n", 1) for info in episode_infos)
                for key in episode_infos[0]:
                    if key != "n":
                        scalars[f"environment/{key}"] = sum(
                            info[key] * info.get("n", 1) for info in episode_infos) / episodes
                scalars["charts/episodic_return"] = scalars["environment/episode_return"]
                scalars["charts/episodic_length"] = scalars["environment/episode_length"]
                history.append((global_step, scalars["charts/episodic_return"],
                                scalars.get("environment/oom_rate", float("nan"))))
            for key, value in scalars.items():
                writer.add_scalar(key, value, global_step)
            dashboard.update(iteration, global_step, scalars)

            stopping = interrupt.requested or (should_stop is not None and should_stop(iteration))
            if evaluating and (iteration % args["eval_interval"] == 0 or iteration == num_iterations):
                eval_return = evaluate_greedy(agent, config)
                writer.add_scalar("eval/episodic_return", eval_return, global_step)
                if eval_return > best_eval_return:
                    best_eval_return = eval_return
                    save_atomic(policy_payload(agent, config, global_step, iteration),
                                run_dir / "best.pt")
            if iteration % args["checkpoint_interval"] == 0 or stopping:
                save_training_checkpoint(iteration)
                save_atomic(policy_payload(agent, config, global_step, iteration),
                            run_dir / f"model_{iteration:06d}.pt")
            if stopping:
                break
        else:
            save_training_checkpoint(iteration)
            save_atomic(policy_payload(agent, config, global_step, iteration), run_dir / "final.pt")

    writer.close()
    vecenv.close()
    plot_learning_curve(history, run_dir / "learning_curve.png", title=run_dir.name)
    return run_dir
