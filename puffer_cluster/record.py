"""`puffer-cluster record POLICY --out episode.gif`: one episode of a policy as an animation.

The frames are the Gymnasium env's own `render()` in `rgb_array` mode (`puffer_cluster.render`),
of the gardener world or, with `--traces`, of a replayed SimKube trace. GIFs are written with
Pillow; MP4s with imageio's ffmpeg plugin when `imageio-ffmpeg` is installed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from puffer_cluster.config import ConfigError, load_config, world_config
from puffer_cluster.registry import get_env_spec, policy_factory
from puffer_cluster.replay import TraceReplayGymEnv, replay_settings
from puffer_cluster.render import BACKGROUND, CRITICAL, GARDENER, TEXT, heat

FORMATS = (".gif", ".mp4")
HEAT_LEVELS = 24


def add_parser(commands) -> argparse.ArgumentParser:
    """Register `record` on the CLI's subparsers (handler called as run(args, overrides))."""
    from puffer_cluster.cli import CONFIG_HELP, POLICY_HELP, positive_int
    parser = commands.add_parser(
        "record", help="record one episode of a policy as a GIF (or MP4)",
        description="Play one episode of POLICY on the gardener world (or, with --traces, on a "
                    "replayed SimKube trace) and write its frames: the cpu, memory and priority "
                    "of every node, the gardener and its 3x3 view, critical nodes, and the step, "
                    "budget, return and last action. SimArena has no image render. Config keys "
                    "follow the options as --section.key value (e.g. --env.height 8).")
    parser.add_argument("policy", metavar="POLICY", help=POLICY_HELP)
    parser.add_argument("--out", required=True, type=Path, metavar="FILE",
                        help="the file to write: .gif, or .mp4 when imageio-ffmpeg is installed")
    parser.add_argument("--steps", type=positive_int, default=100,
                        help="steps to record (fewer when the episode ends first)")
    parser.add_argument("--seed", type=int, default=0, help="the episode's seed")
    parser.add_argument("--fps", type=positive_int, default=8, help="frames per second")
    parser.add_argument("--traces", type=Path, metavar="PATH",
                        help="replay this SimKube trace (or the first trace of this directory) "
                             "instead of the gardener world")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.set_defaults(handler=run)
    return parser


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


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out}: use a .gif or .mp4 name")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    if out.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ConfigError(f"--out {out}: writing MP4 needs the imageio-ffmpeg package "
                              "(not installed); write a .gif instead") from None


def run(args, overrides: list[str]) -> int:
    config = load_config(args.config, overrides)
    spec = get_env_spec(config["base"]["env_name"])
    if "rgb_array" not in spec.gym_env.metadata["render_modes"]:
        raise ConfigError(f"record: the {spec.name} env renders text only, there are no frames "
                          "to record; record the gardener world or a trace replay (--traces)")
    _check_out(args.out)
    world = world_config(config)
    if args.traces is not None:
        if not args.traces.exists():
            raise ConfigError(f"--traces {args.traces}: no such file or directory")
        env = TraceReplayGymEnv(trace=args.traces, render_mode="rgb_array",
                                replay=replay_settings(config), **world)
    else:
        env = spec.gym_env(render_mode="rgb_array", **world)
    policy = policy_factory(args.policy, config, args.seed)(1, env.params)
    frames, episode_return = record_frames(env, policy, args.steps, args.seed)
    try:
        write_animation(frames, args.out, args.fps)
    except OSError as error:
        raise ConfigError(f"cannot write {args.out}: {error.strerror or error}") from None
    size = args.out.stat().st_size
    print(f"wrote {args.out}: {len(frames) - 1} steps of {args.policy} (seed {args.seed}, "
          f"return {episode_return:+.2f}), {len(frames)} frames of "
          f"{frames[0].shape[1]}x{frames[0].shape[0]}, {size / 1024:.0f} KiB")
    return 0
