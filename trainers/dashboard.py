"""Training progress: a live rich dashboard in a terminal, plain periodic lines otherwise.

Both show from the first second where the run goes (its directory), its phase (behaviour
cloning, then PPO), the teacher's weight and the held-out greedy return (last and best).
"""
from __future__ import annotations

import os
import sys
import time

from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

SHOWN = (  # (label, scalar name, format)
    ("episode return", "charts/episodic_return", "{:+.2f}"),
    ("episode length", "charts/episodic_length", "{:.1f}"),
    ("OOM / 100 steps", "environment/oom_rate", "{:.2f}"),
    ("critical OOM / 100 steps", "environment/crit_rate", "{:.2f}"),
    ("solved", "environment/solved", "{:.2f}"),
    ("collapsed", "environment/collapsed", "{:.2f}"),
    ("policy loss", "losses/policy_loss", "{:+.4f}"),
    ("value loss", "losses/value_loss", "{:.4f}"),
    ("entropy", "losses/entropy", "{:.3f}"),
    ("approx KL", "losses/approx_kl", "{:.4f}"),
    ("explained variance", "losses/explained_variance", "{:.3f}"),
    ("learning rate", "charts/learning_rate", "{:.2e}"),
)
PLAIN_SHOWN = ("episode return", "OOM / 100 steps", "solved")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 \
        else f"{seconds // 60}m{seconds % 60:02d}s"


class Dashboard:
    """`update` after each PPO update, `record_eval` after each held-out evaluation.

    The live view re-renders itself 4 times a second (the clock moves between updates); its
    state is only ever rebound, never mutated in place, so the refresh thread reads it safely."""

    def __init__(self, config: dict, num_iterations: int, batch_size: int, run_dir,
                 cloning_iterations: int = 0, first_iteration: int = 1, global_step: int = 0,
                 best_eval: float | None = None, heuristic: float | None = None,
                 quiet: bool = False):
        self.total_steps = num_iterations * batch_size
        self.num_iterations = num_iterations
        self.cloning_iterations = cloning_iterations
        self.has_teacher = config["train"]["teacher"] != "none"
        self.eval_interval = config["train"]["eval_interval"]
        self.name = config["train"]["name"]
        self.run_dir = str(run_dir)
        self.print_interval = config["train"]["print_interval"]
        self.quiet = quiet
        self.interactive = sys.stdout.isatty() and not quiet
        self.scalars: dict = {}
        self.iteration = first_iteration - 1
        self.global_step = self.first_step = global_step
        self.started = time.time()
        self.last_print = 0.0
        self.eval_last: float | None = None
        self.eval_best = best_eval
        self.heuristic = heuristic
        self.note = ""
        self.live = None

    def __enter__(self):
        if self.interactive:
            self.live = Live(get_renderable=self._render, refresh_per_second=4, transient=False)
            self.live.__enter__()
            self.live.refresh()  # drawn now, not a refresh period later
        elif not self.quiet:
            print(f"[{self.name}] run directory: {self.run_dir} | {self._phase()}", flush=True)
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)
        elif not self.quiet and self.iteration:
            print(self._line(), flush=True)

    def update(self, iteration: int, global_step: int, scalars: dict) -> None:
        self.iteration, self.global_step = iteration, global_step
        self.scalars = {**self.scalars, **scalars}
        if self.live is not None:
            self.live.refresh()
        elif not self.quiet and time.time() - self.last_print >= self.print_interval:
            self.last_print = time.time()
            print(self._line(), flush=True)

    def record_eval(self, eval_return: float, best: float, heuristic: float | None) -> None:
        self.eval_last, self.eval_best, self.heuristic = eval_return, best, heuristic

    def stopping(self, message: str) -> None:
        """Shown at once (from a signal handler: no buffered print, which may be mid-write)."""
        self.note = message
        if self.live is None and not self.quiet:
            os.write(2, f"\n{message}\n".encode())

    def _phase(self) -> str:
        """The phase of the last update shown (before the first one: of the first)."""
        if max(self.iteration, 1) <= self.cloning_iterations:
            return f"phase cloning (the teacher acts; to update {self.cloning_iterations})"
        return "phase PPO"

    def _eta(self) -> float | None:
        done = self.global_step - self.first_step
        if done <= 0:
            return None
        return (self.total_steps - self.global_step) * (time.time() - self.started) / done

    def _teacher(self) -> str:
        if not self.has_teacher:
            return "none"
        weight = self.scalars.get("charts/teacher_coef")
        return "-" if weight is None else f"{weight:.3f}"

    def _heldout(self) -> str:
        if self.eval_interval <= 0:
            return "off"
        if self.eval_last is None and self.eval_best is None:
            return f"- (every {self.eval_interval} updates)"
        last = "-" if self.eval_last is None else f"{self.eval_last:+.2f}"
        text = f"{last} / best {self.eval_best:+.2f}"
        return text if self.heuristic is None else f"{text} (heuristic {self.heuristic:+.2f})"

    def _line(self) -> str:
        s = self.scalars
        parts = [f"[{self.name}] step {self.global_step:,}/{self.total_steps:,}",
                 f"update {self.iteration}/{self.num_iterations}", self._phase(),
                 f"SPS {s.get('charts/SPS', 0):,}"]
        parts += [f"{label} {fmt.format(s[key])}" for label, key, fmt in SHOWN
                  if label in PLAIN_SHOWN and key in s]
        parts.append(f"held-out {self._heldout()}")
        if self.has_teacher:
            parts.append(f"teacher {self._teacher()}")
        parts.append(f"elapsed {_duration(time.time() - self.started)}")
        parts.append(f"left {_duration(self._eta())}")
        return " | ".join(parts)

    def _render(self):
        table = Table(title=f"puffer-cluster PPO: {self.name}", show_header=False, expand=False,
                      caption=self.note or None, caption_style="bold yellow")
        table.add_column(style="cyan", no_wrap=True)
        table.add_column(justify="right", overflow="fold")
        table.add_row("run directory", self.run_dir)
        table.add_row("phase", self._phase().removeprefix("phase "))
        table.add_row("steps", f"{self.global_step:,} / {self.total_steps:,}")
        table.add_row("update", f"{self.iteration} / {self.num_iterations}")
        table.add_row("SPS", f"{self.scalars.get('charts/SPS', 0):,}")
        table.add_row("elapsed / left",
                      f"{_duration(time.time() - self.started)} / {_duration(self._eta())}")
        table.add_row("teacher weight", self._teacher())
        table.add_row("held-out return", self._heldout())
        for label, key, fmt in SHOWN:
            if key in self.scalars:
                table.add_row(label, fmt.format(self.scalars[key]))
        bar = ProgressBar(total=max(self.total_steps, 1), completed=self.global_step, width=60)
        return Group(table, bar)
