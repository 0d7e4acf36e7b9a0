"""Tell the user when Numba is about to compile: a first run sits silent for ~20 s otherwise.

Numba compiles a kernel on its first call and keeps it in an on-disk cache (`cache=True`,
`__pycache__` or `NUMBA_CACHE_DIR`); later processes load it in well under a second. A kernel is
*cold* when this process has not compiled it and its cache index has no fresh entry.
"""
from __future__ import annotations

import sys

MESSAGE = "compiling kernels (first run only)..."

_checked: set[int] = set()  # ids of the dispatchers already looked at (module-level, never freed)
_announced = False


def is_cold(dispatcher) -> bool:
    """Whether calling this Numba dispatcher will compile it. False for anything without an
    on-disk cache (plain functions, `cache=False` kernels): nothing reliable to say."""
    if getattr(dispatcher, "overloads", None):
        return False
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is None:
        return False
    try:
        # One index serves every build of one source (closures of a factory: the parallel and
        # serial kernels); this build's entries are those with its code and closure hashes.
        _, magic, hashes = cache._index_key(None, dispatcher.targetctx.codegen())
        index = cache_file._load_index()  # {} when missing, of another Numba, or stale
        return not any(key[1:] == (magic, hashes) for key in index)
    except Exception:  # a damaged index: Numba recompiles, but say nothing rather than guess
        return False


def announce_if_cold(*dispatchers) -> None:
    """Print MESSAGE on stderr, once per process, if one of `dispatchers` will compile."""
    global _announced
    fresh = [d for d in dispatchers if id(d) not in _checked]
    if _announced or not fresh:
        return
    _checked.update(id(d) for d in fresh)
    if any(is_cold(d) for d in fresh):
        _announced = True
        print(MESSAGE, file=sys.stderr, flush=True)
