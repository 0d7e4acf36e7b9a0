"""`puffer-cluster record POLICY --out episode.gif`: one episode of a policy as a GIF or MP4
(`puffer_cluster.record`)."""
from __future__ import annotations

from pathlib import Path

from puffer_cluster.cli.common import CONFIG_HELP, POLICY_HELP, CLIError, positive_int
from puffer_cluster.config import load_config, world_config
from puffer_cluster.record import record_frames, write_animation
from puffer_cluster.registry import get_env_spec, policy_factory
from puffer_cluster.replay import TraceReplayGymEnv, replay_settings

FORMATS = (".gif", ".mp4")


def add_parser(commands):
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
    return parser


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in FORMATS:
        raise CLIError(f"--out {out}: use a .gif or .mp4 name")
    if not out.parent.is_dir():
        raise CLIError(f"--out {out}: folder {out.parent} does not exist")
    if out.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise CLIError(f"--out {out}: writing MP4 needs the imageio-ffmpeg package "
                           "(not installed); write a .gif instead") from None


def run(args, overrides: list[str]) -> int:
    config = load_config(args.config, overrides)
    spec = get_env_spec(config["base"]["env_name"])
    if "rgb_array" not in spec.gym_env.metadata["render_modes"]:
        raise CLIError(f"record: the {spec.name} env renders text only, there are no frames to "
                       "record; record the gardener world or a trace replay (--traces)")
    _check_out(args.out)
    world = world_config(config)
    if args.traces is not None:
        if not args.traces.exists():
            raise CLIError(f"--traces {args.traces}: no such file or directory")
        env = TraceReplayGymEnv(trace=args.traces, render_mode="rgb_array",
                                replay=replay_settings(config), **world)
    else:
        env = spec.gym_env(render_mode="rgb_array", **world)
    policy = policy_factory(args.policy, config, args.seed)(1, env.params)
    frames, episode_return = record_frames(env, policy, args.steps, args.seed)
    try:
        write_animation(frames, args.out, args.fps)
    except OSError as error:
        raise CLIError(f"cannot write {args.out}: {error.strerror or error}") from None
    size = args.out.stat().st_size
    print(f"wrote {args.out}: {len(frames) - 1} steps of {args.policy} (seed {args.seed}, "
          f"return {episode_return:+.2f}), {len(frames)} frames of "
          f"{frames[0].shape[1]}x{frames[0].shape[0]}, {size / 1024:.0f} KiB")
    return 0
