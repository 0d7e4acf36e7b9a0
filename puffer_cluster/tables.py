"""The gardener's benchmark table (also the trace replay's): one row of episode statistics per
policy, wins counted pair by pair against the first policy, in the format of the seed README."""
from __future__ import annotations

import numpy as np

from puffer_cluster.kernels.world import EPISODE_STATS, STAT_RETURN

BASELINES = ("random", "heuristic")


def paired_wins(stats: np.ndarray, baseline: np.ndarray | None, column: int) -> dict:
    """{'wins', 'ties'} of the episode returns in `column` against the baseline's, pair by pair
    (nothing for the baseline itself)."""
    if baseline is None:
        return {}
    ours, theirs = stats[:, column], baseline[:, column]
    return {"wins": int((ours > theirs).sum()), "ties": int((ours == theirs).sum())}


def summarize(name: str, stats: np.ndarray, baseline: np.ndarray | None, env=None) -> dict:
    """One row of the table (`env`, the env the episodes were played on, is not needed)."""
    column = {stat: stats[:, i] for i, stat in enumerate(EPISODE_STATS)}
    return {
        "name": name,
        "episodes": len(stats),
        "reward_mean": float(column["episode_return"].mean()),
        "reward_std": float(column["episode_return"].std()),
        "steps_mean": float(column["episode_length"].mean()),
        "oom_rate": float(column["oom_rate"].mean()),
        "crit_rate": float(column["crit_rate"].mean()),
        "avg_load_mean": float(column["avg_load"].mean()),
        "oom_count_mean": float(column["oom_count"].mean()),
        "crit_count_mean": float(column["crit_count"].mean()),
        "collapsed_fraction": float(column["collapsed"].mean()),
        **paired_wins(stats, baseline, STAT_RETURN),
    }


def statistics_row(env_name: str, stat_names, name: str, stats: np.ndarray,
                   baseline: np.ndarray | None) -> dict:
    """A row of any env's table: the mean and spread of the return, every other statistic's
    mean, wins against the baseline."""
    column = list(stat_names).index("episode_return")
    return {"env": env_name, "name": name, "episodes": len(stats),
            "reward_mean": float(stats[:, column].mean()),
            "reward_std": float(stats[:, column].std()),
            **{f"{stat}_mean": float(stats[:, k].mean()) for k, stat in enumerate(stat_names)
               if k != column},
            **paired_wins(stats, baseline, column)}


def results_table(title: str, rows: list[dict], row_text, builtin_names, width: int = 70,
                  note: str = "", sections=()) -> str:
    """The frame every env's table shares: a ruled title naming the policies, one line per
    policy (name, the return's mean and spread, then `row_text(row)`), each of `sections`
    (`section(name_width) -> lines`) after a rule, then the win rates against the first policy."""
    name_width = max(len(row["name"]) for row in rows)
    rule = "=" * width
    lines = [rule, f"{title} ({' vs '.join(row['name'] for row in rows)}{note})", rule]
    lines += [f"{row['name']:<{name_width}} | reward mu={row['reward_mean']:+.3f} "
              f"sigma={row['reward_std']:.3f}{row_text(row)}" for row in rows]
    for section in sections:
        lines.append("-" * width)
        lines.extend(section(name_width))
    lines.append("-" * width)
    lines.extend(win_rate_lines(rows, builtin_names))
    lines.append(rule)
    return "\n".join(lines)


def format_gardener_table(rows: list[dict]) -> str:
    """The table in the format of the seed README (mu/sigma spelled out in ASCII)."""
    return results_table(
        "BENCHMARK RESULTS", rows,
        lambda row: f" | steps mu={row['steps_mean']:.1f} | oom_rate={row['oom_rate']:.2f}"
                    f" | crit_rate={row['crit_rate']:.2f} | avg_load mu={row['avg_load_mean']:.3f}",
        BASELINES)


def win_rate_lines(rows: list[dict], builtin_names) -> list[str]:
    """'Heuristic win-rate: 50/50 (ties: 0)' for every row after the first: built-in policy
    names capitalised, checkpoint paths as given."""
    lines = []
    for row in rows[1:]:
        name = row["name"].capitalize() if row["name"] in builtin_names else row["name"]
        lines.append(f"{name} win-rate: {row['wins']}/{row['episodes']} (ties: {row['ties']})")
    return lines
