"""The learning-curve picture of a run: the held-out greedy return against the heuristic's on the
same episodes, the training episodes' return, and a second statistic (the OOM rate), against
environment steps, with the behaviour-cloning phase shaded."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

CLONING_COLOR = "0.9"


def plot_learning_curve(path: Path, title: str, train_history: list[tuple[float, float, float]],
                        eval_history: list[tuple[float, float]], heuristic_return: float | None,
                        cloning_until_step: float = 0, second_label: str = "OOM per 100 steps"
                        ) -> Path:
    """`train_history`: (step, training episodes' mean return, second statistic);
    `eval_history`: (step, held-out greedy return); `heuristic_return`: the heuristic on the same
    held-out episodes (None: no evaluation); the teacher acted up to `cloning_until_step`."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                         gridspec_kw={"height_ratios": [2, 1]})
    for axis in (top, bottom):
        if cloning_until_step > 0:
            axis.axvspan(0, cloning_until_step, color=CLONING_COLOR, zorder=0,
                         label="cloning: the teacher acts" if axis is top else None)
        axis.grid(alpha=0.3)
    if train_history:
        steps, returns, seconds = zip(*train_history)
        top.plot(steps, returns, color="tab:green", alpha=0.6, linewidth=1, marker=".",
                 label="training episodes (sampled actions)")
        bottom.plot(steps, seconds, color="tab:red", marker=".")
    if eval_history:
        steps, returns = zip(*eval_history)
        top.plot(steps, returns, color="tab:blue", marker="o", markersize=4, linewidth=1.5,
                 label="held-out episodes, greedy")
        best = max(range(len(returns)), key=returns.__getitem__)
        top.annotate(f"best {returns[best]:+.1f}", (steps[best], returns[best]),
                     textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8,
                     color="tab:blue")
    if heuristic_return is not None and math.isfinite(heuristic_return):
        top.axhline(heuristic_return, color="black", linestyle="--", linewidth=1,
                    label=f"heuristic on the held-out episodes ({heuristic_return:+.1f})")
    if not train_history and not eval_history:
        top.text(0.5, 0.5, "no episode finished during this run", ha="center", va="center",
                 transform=top.transAxes)
    top.set_ylabel("episode return")
    top.set_xlim(left=0)
    bottom.set_ylabel(f"{second_label}\n(training episodes)")
    bottom.set_xlabel("environment steps (agent-steps)")
    bottom.xaxis.set_major_formatter(EngFormatter(sep=""))
    figure.suptitle(title, fontsize=9)
    # The legend above the curves, where it never hides one.
    handles, labels = top.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="upper center", ncol=2, fontsize=8, frameon=False,
                      bbox_to_anchor=(0.5, 0.965))
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
