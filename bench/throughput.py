"""Throughput of every env and trainer of the project, in one report (`bench.throughput_report`).

    python -m bench.throughput [--quick] [--json out.json] [--train]

`python bench/throughput.py ...` runs it too.
"""
import sys
from pathlib import Path

if not __package__:  # run as a script: import `bench` from the repo root, not from bench/ itself
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.throughput_report import main  # noqa: E402

if __name__ == "__main__":
    main()
