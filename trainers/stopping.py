"""Stopping a run cleanly: Ctrl-C and SIGTERM, and the message that says how to resume."""
from __future__ import annotations

import shlex
import signal
import threading
from contextlib import contextmanager
from pathlib import Path


class TrainingInterrupted(Exception):
    """A run stopped by a signal; the message says where latest.pt is and how to resume."""

    def __init__(self, message: str, run_dir: Path, signum: int):
        super().__init__(message)
        self.run_dir, self.signum = run_dir, signum


class PeerFailed(RuntimeError):
    """Another process of a torchrun run stopped (it failed or was killed), or did not come to a
    collective within `[train] collective_timeout`, while this one waited for it; raised inside
    the training loop, the message says where latest.pt is and how to resume."""


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM (what schedulers and torchrun send): the trainer finishes the
    current update, saves latest.pt (and sets `saved_iteration`), then raises `interrupted()`.
    A second Ctrl-C stops at once: its KeyboardInterrupt leaves the `with` block as
    `TrainingInterrupted` (a save it cuts short leaves the previous latest.pt in place).
    A `PeerFailed` leaving the block gains the same resume message.
    Signals are only caught in the main thread. `launcher` starts the resume command."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, run_dir: Path, saved_iteration: int | None = None, on_first=None,
                 launcher: tuple[str, ...] = ("puffer-cluster",)):
        self.run_dir, self.saved_iteration = run_dir, saved_iteration
        self.launcher = tuple(launcher)
        self.signum = None
        self.on_first = on_first
        self.previous = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self):
        def handler(signum, frame):
            if self.signum is None:
                self.signum = signum
                if self.on_first is not None:
                    self.on_first(f"{signal.Signals(signum).name}: finishing this update, then "
                                  "saving latest.pt and stopping (Ctrl-C again: stop at once)")
            elif signum == signal.SIGINT:
                raise KeyboardInterrupt
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, handler) for s in self.SIGNALS}
        return self

    def __exit__(self, exc_type, exc, traceback):
        for s, previous in self.previous.items():
            signal.signal(s, previous)
        if exc_type is KeyboardInterrupt:
            raise self.interrupted("stopped at once by a second Ctrl-C", signal.SIGINT) from None
        if exc_type is PeerFailed:
            if self.previous:  # torchrun sends SIGTERM to the survivors now: let the message out
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise PeerFailed(self.resume_message(str(exc))) from None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    def interrupted(self, how: str, signum: int | None = None) -> TrainingInterrupted:
        """The exception ending a stopped run (see `resume_message`)."""
        return TrainingInterrupted(self.resume_message(how), self.run_dir, signum or self.signum)

    def resume_message(self, how: str) -> str:
        """`how` the run stopped, where latest.pt is, and the command that resumes it."""
        latest = self.run_dir / "latest.pt"
        if self.saved_iteration is None:
            return f"{how}; no latest.pt was saved yet (run directory: {self.run_dir})"
        return (f"{how}; latest.pt (after update {self.saved_iteration}): {latest}\n"
                "resume with: " + shlex.join([*self.launcher, "train", "--resume", str(latest)]))


@contextmanager
def workers_ignore_ctrl_c(starting_workers: bool):
    """Processes started inside ignore SIGINT (a terminal's Ctrl-C reaches the whole process
    group): the trainer decides when to stop and closes its workers itself."""
    if not starting_workers or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
