"""One episode of a policy as an animation (`puffer-cluster record POLICY --out episode.gif`).

The frames are the Gymnasium env's own `render()` in `rgb_array` mode (`puffer_cluster.render`),
of the gardener world or, with `--traces`, of a replayed SimKube trace. GIFs are written with
Pillow; MP4s with imageio's ffmpeg plugin when `imageio-ffmpeg` is installed.

Offline SimArena episodes are recorded as sim-arena's run records (`eval --records DIR`,
`puffer_cluster.run_records`).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from puffer_cluster.kernels.simarena import ACTION_NAMES
from puffer_cluster.registry import policy_factory
from puffer_cluster.render import BACKGROUND, CRITICAL, GARDENER, TEXT, heat
from puffer_cluster.run_records import RunRecorder, new_run_dir, observation_record, trace_record
from puffer_cluster.simarena import SimArenaGymEnv

HEAT_LEVELS = 24


def record_frames(env, policy, steps: int, seed: int) -> tuple[list[np.ndarray], float]:
    """The frames of the first `steps` steps of an episode (one more: the start) and its return
    so far, the `policy(observations, episode_start)` playing the one-grid Gymnasium `env`."""
    observation, _ = env.reset(seed=seed)
    frames, episode_return = [env.render()], 0.0
    episode_start = np.ones(1, dtype=bool)
    for _ in range(steps):
        action = int(policy(observation[None], episode_start)[0])
        observation, reward, terminated, truncated, _ = env.step(action)
        frames.append(env.render())
        episode_return += reward
        episode_start[0] = False
        if terminated or truncated:
            break
    return frames, episode_return


def gif_palette(heat_levels: int = HEAT_LEVELS) -> np.ndarray:
    """The GIF's colours (k, 3): the frames' fixed colours, greys for the text's edges, and the
    heat map in `heat_levels` steps. A fixed palette keeps the gardener cyan and the critical
    marks blue, and few levels keep most cells unchanged between frames: small GIFs."""
    greys = np.linspace(BACKGROUND[0], TEXT[0], 6).round().astype(np.uint8)[1:-1, None].repeat(3, 1)
    fixed = np.array([BACKGROUND, TEXT, GARDENER, CRITICAL], dtype=np.uint8)
    return np.concatenate([fixed, greys, heat(np.linspace(0.0, 1.0, heat_levels))])


def write_animation(frames: list[np.ndarray], out: Path, fps: int) -> None:
    if out.suffix.lower() == ".mp4":
        import imageio.v2 as imageio
        # H.264 wants sides that are multiples of 16: pad with the frame's background.
        pad = [(0, -side % 16) for side in frames[0].shape[:2]] + [(0, 0)]
        imageio.mimwrite(out, [np.pad(f, pad, mode="edge") for f in frames], fps=fps)
        return
    from PIL import Image
    palette = Image.new("P", (1, 1))
    palette.putpalette(gif_palette().reshape(-1).tolist())
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE)
              for f in frames]
    images[0].save(out, save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, optimize=True)


def record_simarena_episodes(spec: str, episodes: int, seed: int, config: dict,
                             root: str | os.PathLike[str]) -> Path:
    """Play `episodes` offline SimArena episodes of a policy (episode e on scenario e mod the
    number of scenarios, as the eval table) and record them in a new run directory."""
    env = SimArenaGymEnv(simarena=config.get("simarena"), replay=config.get("replay"))
    policy = policy_factory(spec, config, seed, env_name="simarena")(1, env.params)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(spec).stem)
    run_dir = new_run_dir(root, f"eval-{name}")
    recorder = RunRecorder(run_dir, {"command": "eval", "policy": spec, "episodes": episodes,
                                     "seed": seed, "reward": env.settings.reward,
                                     "simarena": asdict(env.settings)})
    state = env.state

    def now(observation):
        return (trace_record(None, state.cpu[0], state.mem[0], state.replicas[0]),
                observation_record(state.ready[0], state.pending[0], state.replicas[0],
                                   state.blocked[0], observation))

    status = "done"
    try:
        for episode in range(episodes):
            observation, info = env.reset(seed=seed if episode == 0 else None,
                                          options={"scenario": episode % len(env.scenarios)})
            for t in range(1, env.settings.max_steps + 1):
                trace_in, observed = now(observation)
                action = int(policy(observation[None], np.array([t == 1]))[0])
                started = time.perf_counter()
                observation, reward, terminated, truncated, info = env.step(action)
                elapsed = time.perf_counter() - started
                trace_out, next_observed = now(observation)
                recorder.step({
                    "episode": episode, "step": t, "scenario": info["scenario"],
                    "trace_in": trace_in, "trace_out": trace_out,
                    "action": action, "action_name": ACTION_NAMES[action],
                    "observation": observed, "next_observation": next_observed,
                    "reward": float(reward), "terminated": bool(terminated),
                    "truncated": bool(truncated), "timings": {"step_s": round(elapsed, 6)}})
                if terminated or truncated:
                    break
    except BaseException as error:
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else f"error: {error}"
        raise
    finally:
        recorder.close(status)
    return run_dir
