"""The learning-curve picture of a run: episode return and OOM rate against steps."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curve(history: list[tuple[int, float, float]], path: Path, title: str) -> Path:
    steps, returns, oom_rates = zip(*history) if history else ((), (), ())
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    if not history:
        top.text(0.5, 0.5, "no episode finished during this run", ha="center", va="center",
                 transform=top.transAxes)
    top.plot(steps, returns, color="tab:green")
    top.set_ylabel("episode return")
    top.grid(alpha=0.3)
    bottom.plot(steps, oom_rates, color="tab:red")
    bottom.set_ylabel("OOM per 100 steps")
    bottom.set_xlabel("environment steps")
    bottom.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
