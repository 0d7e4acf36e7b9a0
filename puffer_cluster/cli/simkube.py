"""`puffer-cluster simkube run --trace FILE`: replay a trace in a SimKube cluster
(`puffer_cluster.simkube`: the modes, the preflight checks and the exit statuses)."""
from __future__ import annotations

import math
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from puffer_cluster.kernels.simarena import REWARDS
from puffer_cluster.cli.common import CLIError, add_kubeconfig_arguments
from puffer_cluster.config import load_config
from puffer_cluster.simkube import (
    KubeconfigError, api_client_from_kubeconfig, build_simulation, default_simulation_name,
    default_timeout, default_trace_path, find_kubeconfig, format_observation, load_hooks,
    load_replayable_trace, parse_sim_duration, preflight, run_simulation, simkube_settings,
    simulation_yaml, trace_warnings, virtual_namespaces,
)
from puffer_cluster.traces import TraceError


# --------------------------------------------------------------------------------------- CLI

def add_parser(commands):
    simkube = commands.add_parser(
        "simkube", help="run traces in a SimKube cluster",
        description="Run traces in a real SimKube cluster (the simkube.io/v1 Simulation CRD).")
    subcommands = simkube.add_subparsers(dest="simkube_command", metavar="COMMAND", required=True)
    run_parser = subcommands.add_parser(
        "run", help="replay a trace as a SimKube Simulation",
        description="Build a simkube.io/v1 Simulation for a trace, check the cluster, submit it, "
                    "watch its state until Finished or Failed, read the pods of its virtual "
                    "namespaces, and delete it on exit (also on errors and Ctrl-C). Without a "
                    "kubeconfig (or with --dry-run) it only prints the Simulation.",
        epilog="Exit status: 0 done, 1 unreadable file, 2 unusable trace or arguments, 3 bad "
               "kubeconfig, 4 API unreachable, 5 SimKube CRD missing or incompatible, 6 a Simulation "
               "exists, 7 pods left in a virtual namespace, 8 namespace 'monitoring' missing, "
               "9 Simulation Failed, 10 timeout, 11 API error during the run, 130 interrupted. "
               "[simkube] config keys (driver image, namespace, port, trace_dir, lifecycle delays, "
               "observe_interval, timeout_grace) follow as --simkube.key value.")
    run_parser.add_argument("--trace", required=True, type=Path, metavar="FILE",
                     help="the trace (SimKube v2 msgpack), checked here before anything else")
    run_parser.add_argument("--trace-path", metavar="URL",
                     help="where the driver reads the trace in the cluster: file:///path on the "
                          "node, s3://, gs://, azure://... (default: <[simkube] trace_dir>/<FILE's "
                          "name>, i.e. file:///data/<name>)")
    run_parser.add_argument("--name", help="Simulation name (default: FILE's name without extension)")
    run_parser.add_argument("--duration", help="replay only this long: seconds or 90s, 5m, 1h30m "
                                        "(default: the whole trace)")
    run_parser.add_argument("--speed", type=float, default=1.0, help="SimKube's time multiplier (default 1)")
    run_parser.add_argument("--repetitions", type=int, default=1, help="runs of the trace (default 1)")
    run_parser.add_argument("--hooks", action="append", metavar="FILE",
                     help="a SimKube hooks file (preStartHooks, ...); repeat to merge in order")
    run_parser.add_argument("--timeout", help="give up waiting after this long (default: the replayed "
                                       "span / speed * repetitions + [simkube] timeout_grace)")
    mode = run_parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="print the Simulation as YAML, call no API (the default without a kubeconfig)")
    mode.add_argument("--read-only", action="store_true",
                      help="print the Simulation and run the preflight checks only (reads, no writes)")
    add_kubeconfig_arguments(run_parser)
    run_parser.add_argument("--config", help="a config file overriding configs/gardener.ini")
    add_loop_parser(subcommands)
    return simkube


def _load_trace(path):
    """The replayable trace at `path`, or a one-line CLIError (exit status 1 if unreadable)."""
    try:
        return load_replayable_trace(path)
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}", 1) from None
    except TraceError as exc:
        raise CLIError(f"{path}: {exc}") from None


def run(args, overrides: list[str]) -> int:
    if args.simkube_command == "loop":
        return run_loop(args, overrides)
    config = load_config(args.config, overrides)
    settings = simkube_settings(config)
    local = _load_trace(args.trace)
    duration_s = parse_sim_duration(args.duration) if args.duration is not None else None
    try:
        hooks = load_hooks(args.hooks)
    except OSError as exc:
        raise CLIError(f"cannot read hooks file {exc.filename}: {exc.strerror or exc}", 1) from None
    name = args.name if args.name is not None else default_simulation_name(local.path)
    trace_path = args.trace_path or default_trace_path(local.path, settings.trace_dir)
    simulation = build_simulation(name, trace_path, settings, duration_s=duration_s,
                                  speed=args.speed, repetitions=args.repetitions, hooks=hooks,
                                  trace=local)
    timeout_s = (parse_sim_duration(args.timeout) if args.timeout is not None else
                 default_timeout(local.trace, duration_s, args.speed, args.repetitions,
                                 settings.timeout_grace))
    for warning in trace_warnings(local.trace, duration_s):
        print(f"warning: {warning}", file=sys.stderr)
    namespaces = virtual_namespaces(local.trace, settings.virtual_ns_prefix)

    kubeconfig = None if args.dry_run else find_kubeconfig(args.kubeconfig)
    if kubeconfig is None and args.read_only:
        raise KubeconfigError("--read-only checks a cluster, but no kubeconfig was found "
                              "($KUBECONFIG, ~/.kube/config); pass --kubeconfig")
    if kubeconfig is None and not args.dry_run:
        print("note: no kubeconfig found ($KUBECONFIG, ~/.kube/config): dry run, nothing was "
              "submitted", file=sys.stderr)
    print(simulation_yaml(simulation), end="")
    if kubeconfig is None:
        return 0
    api = api_client_from_kubeconfig(kubeconfig, args.context)
    previous_sigterm = _raise_on_sigterm()
    try:
        print(f"cluster {api.configuration.host} (kubeconfig {kubeconfig}"
              + (f", context {args.context})" if args.context else ")"))
        preflight(api, simulation, namespaces, settings)
        if args.read_only:
            print("read-only: preflight passed, nothing was submitted")
            return 0
        print(f"submitting Simulation {name}: trace {trace_path}, timeout {timeout_s} s")
        result = run_simulation(api, simulation, namespaces, timeout_s=timeout_s, settings=settings)
        history = " -> ".join(state or "(none)" for _, state in result.states)
        print(f"Simulation {name} {result.state} after {result.elapsed_s:.1f} s ({history})")
        running = [o for o in result.observations if o["state"] == "Running"]
        if running:
            print(f"last pods while running: {format_observation(running[-1]['pods'])}")
        return 0
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        api.close()


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt


def _raise_on_sigterm():
    """Turn SIGTERM into KeyboardInterrupt during a run, so that the Simulation is deleted."""
    try:
        return signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    except ValueError:  # not the main thread
        return None


# ------------------------------------------------------------------------------ simkube loop

def add_loop_parser(subcommands):
    from puffer_cluster.cli.common import positive_int
    parser = subcommands.add_parser(
        "loop", help="sim-arena's agent loop: a policy edits a trace, SimKube replays it",
        description="Per step: the policy edits the trace (SimArena's actions), a SimKube "
                    "Simulation replays it, the target Deployment's pods are counted while it "
                    "runs, the step is rewarded as SimArena rewards it and recorded, and the "
                    "Simulation is deleted (also on errors, Ctrl-C and SIGTERM). Records go to "
                    "<--records>/loop-<trace>-<time>/ (step.jsonl, summary.json, traces/). "
                    "Without a kubeconfig (or with --dry-run) it only prints what it would do.",
        epilog="Exit status: as `simkube run`, and 12 when the Deployment's pods never appear. "
               "[simarena] keys (steps, floors, ceilings, reward weights, nodes) and [simkube] "
               "keys follow as --section.key value.")
    parser.add_argument("--trace", required=True, type=Path, metavar="FILE",
                        help="the starting trace (SimKube v2 msgpack)")
    parser.add_argument("--deploy", help="the Deployment to fix (default: [simarena] deploy)")
    parser.add_argument("--namespace", default="",
                        help="its namespace in the trace (default: the only one of that name)")
    parser.add_argument("--target", type=positive_int,
                        help="ready pods wanted (default: the trace's scenario target, else "
                             "[simarena] target)")
    parser.add_argument("--policy", required=True,
                        help="random, heuristic, an action name (noop, bump_cpu, ...) or a "
                             "SimArena checkpoint")
    parser.add_argument("--steps", type=positive_int, help="steps per episode at most "
                                                           "(default: [simarena] max_steps)")
    parser.add_argument("--episodes", type=positive_int, default=1,
                        help="episodes, each starting from the trace the last one ended with")
    parser.add_argument("--duration",
                        help="each Simulation replays this long: seconds or 90s, 5m (default: "
                             "[simarena] observe_seconds, when the offline env counts the pods)")
    parser.add_argument("--timeout", help="give up on a Simulation after this long (default: "
                                          "--duration + [simkube] timeout_grace)")
    parser.add_argument("--reward", choices=REWARDS, help="default: [simarena] reward")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    parser.add_argument("--records", type=Path, default=Path("runs"),
                        help="the run's directory is made in this one")
    parser.add_argument("--trace-dir", type=Path,
                        help="where the edited traces are written (default: the run's traces/)")
    parser.add_argument("--trace-url", help="where SimKube's driver reads --trace-dir (default: "
                                            "file://<its absolute path>)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what it would do, call no API (the default without a kubeconfig)")
    add_kubeconfig_arguments(parser)
    parser.add_argument("--config", help="a config file overriding configs/gardener.ini")
    return parser


def run_loop(args, overrides: list[str]) -> int:
    from puffer_cluster.replay import replay_settings
    from puffer_cluster.run_records import RunRecorder, new_run_dir
    from puffer_cluster.registry import policy_factory
    from puffer_cluster.simarena import ScenarioError, simarena_settings
    from puffer_cluster.simkube.loop import AgentLoop, ArenaView, LoopOptions, simulation_name
    config = load_config(args.config, overrides)
    given = {"deploy": args.deploy, "max_steps": args.steps, "reward": args.reward}
    settings = simarena_settings(config, namespace=args.namespace,
                                 **{key: value for key, value in given.items() if value is not None})
    sk = simkube_settings(config)
    local = _load_trace(args.trace)
    view = ArenaView(settings, replay_settings(config.get("replay")), settings.deploy, args.target)
    try:
        scenario = view.scenario(local.trace, local.path.name)
    except ScenarioError as exc:
        raise CLIError(str(exc)) from None
    policy = policy_factory(args.policy, config, args.seed, env_name="simarena")(1, view.params)
    duration_s = (parse_sim_duration(args.duration) if args.duration is not None
                  else max(1, math.ceil(settings.observe_seconds)))
    timeout_s = parse_sim_duration(args.timeout) if args.timeout is not None else None
    stem = default_simulation_name(local.path)
    plan = (f"{args.episodes} episode(s) of at most {settings.max_steps} steps: policy "
            f"{args.policy} fixes Deployment {scenario.deploy} (target {scenario.target} ready; "
            f"now {scenario.replicas} replicas of {scenario.cpu}m cpu, "
            f"{scenario.mem // 2**20}Mi memory), reward {settings.reward}; per step: edit the "
            f"trace, preflight, a Simulation replaying it for {duration_s} s, count the pods in "
            f"{sk.virtual_ns_prefix}-{scenario.namespace or 'default'}, delete the Simulation")

    kubeconfig = None if args.dry_run else find_kubeconfig(args.kubeconfig)
    if kubeconfig is None:
        if not args.dry_run:
            print("note: no kubeconfig found ($KUBECONFIG, ~/.kube/config): dry run, nothing was "
                  "submitted", file=sys.stderr)
        trace_dir = args.trace_dir or args.records / f"loop-{stem}-<time>" / "traces"
        url = (args.trace_url or f"file://{trace_dir.absolute()}").rstrip("/")
        print(f"dry run: would run {plan}")
        print(f"traces written to {trace_dir}, read by the driver at {url}; the first Simulation:")
        first = simulation_name(local.path, 0)
        print(simulation_yaml(build_simulation(first, f"{url}/{first}.sktrace", sk,
                                               duration_s=duration_s, trace=local)), end="")
        return 0

    api = api_client_from_kubeconfig(kubeconfig, args.context)
    try:
        run_dir = new_run_dir(args.records, f"loop-{stem}")
        options = LoopOptions(trace=local.path, steps=settings.max_steps, episodes=args.episodes,
                              duration_s=duration_s, timeout_s=timeout_s,
                              trace_dir=args.trace_dir or run_dir / "traces", trace_url=args.trace_url)
        options.trace_dir.mkdir(parents=True, exist_ok=True)
        recorder = RunRecorder(run_dir, {
            "command": "simkube loop", "trace": local.path, "deploy": scenario.deploy,
            "target": scenario.target, "policy": args.policy, "reward": settings.reward,
            "steps": settings.max_steps, "episodes": args.episodes, "duration_s": duration_s,
            "cluster": api.configuration.host, "simarena": asdict(settings)})
    except OSError as exc:
        api.close()
        raise CLIError(f"cannot write the run's records: {exc}", 1) from None
    print(f"cluster {api.configuration.host}: {plan}")
    print(f"records: {run_dir}")
    previous_sigterm = _raise_on_sigterm()
    status = "done"
    try:
        AgentLoop(api, options, view, policy, sk, recorder).run()
        return 0
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except OSError as exc:  # a trace the loop could not write
        status = f"error: {exc}"
        raise CLIError(f"cannot write {exc.filename or 'a trace'}: {exc.strerror or exc}", 1) from None
    except Exception as exc:
        status = f"error: {exc}"
        raise
    finally:
        summary = recorder.close(status)
        print(f"{summary['steps']} steps in {len(summary['episodes'])} episode(s), {status}; "
              f"records in {run_dir}")
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        api.close()
