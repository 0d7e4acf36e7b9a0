"""Training progress: a live rich dashboard in a terminal, plain periodic lines otherwise."""
from __future__ import annotations

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
    ("collapsed", "environment/collapsed", "{:.2f}"),
    ("policy loss", "losses/policy_loss", "{:+.4f}"),
    ("value loss", "losses/value_loss", "{:.4f}"),
    ("entropy", "losses/entropy", "{:.3f}"),
    ("approx KL", "losses/approx_kl", "{:.4f}"),
    ("explained variance", "losses/explained_variance", "{:.3f}"),
    ("learning rate", "charts/learning_rate", "{:.2e}"),
)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 \
        else f"{seconds // 60}m{seconds % 60:02d}s"


class Dashboard:
    def __init__(self, config: dict, num_iterations: int, batch_size: int, quiet: bool = False):
        self.total_steps = num_iterations * batch_size
        self.num_iterations = num_iterations
        self.name = config["train"]["name"]
        self.print_interval = config["train"]["print_interval"]
        self.quiet = quiet
        self.interactive = sys.stdout.isatty() and not quiet
        self.scalars: dict = {}
        self.global_step = 0
        self.iteration = 0
        self.started = time.time()
        self.first_step = None
        self.last_print = 0.0
        self.live = None

    def __enter__(self):
        if self.interactive:
            self.live = Live(self._render(), refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)
        elif not self.quiet and self.iteration:
            print(self._line(), flush=True)

    def _eta(self) -> float:
        done = self.global_step - self.first_step
        elapsed = time.time() - self.started
        return (self.total_steps - self.global_step) * elapsed / done if done > 0 else 0.0

    def update(self, iteration: int, global_step: int, scalars: dict) -> None:
        if self.first_step is None:
            self.first_step = global_step - (global_step // iteration if iteration else 0)
        self.iteration, self.global_step = iteration, global_step
        self.scalars.update(scalars)
        if self.live is not None:
            self.live.update(self._render())
        elif not self.quiet and time.time() - self.last_print >= self.print_interval:
            self.last_print = time.time()
            print(self._line(), flush=True)

    def _line(self) -> str:
        s = self.scalars
        parts = [f"[{self.name}] step {self.global_step:,}/{self.total_steps:,}",
                 f"update {self.iteration}/{self.num_iterations}", f"SPS {s.get('charts/SPS', 0):,}"]
        for label, key, fmt in SHOWN[:4]:
            if key in s:
                parts.append(f"{label} {fmt.format(s[key])}")
        parts.append(f"elapsed {_duration(time.time() - self.started)}")
        parts.append(f"left {_duration(self._eta())}")
        return " | ".join(parts)

    def _render(self):
        table = Table(title=f"puffer-cluster PPO: {self.name}", show_header=False, expand=False)
        table.add_column(style="cyan")
        table.add_column(justify="right")
        table.add_row("steps", f"{self.global_step:,} / {self.total_steps:,}")
        table.add_row("update", f"{self.iteration} / {self.num_iterations}")
        table.add_row("SPS", f"{self.scalars.get('charts/SPS', 0):,}")
        table.add_row("elapsed / left", f"{_duration(time.time() - self.started)} / {_duration(self._eta())}")
        for label, key, fmt in SHOWN:
            if key in self.scalars:
                table.add_row(label, fmt.format(self.scalars[key]))
        bar = ProgressBar(total=max(self.total_steps, 1), completed=self.global_step, width=60)
        return Group(table, bar)
