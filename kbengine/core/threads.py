"""Fair by default: the cores of one machine shared among the kbengine processes on it.

Two things, both without any setting:

- ``OMP_WAIT_POLICY=PASSIVE`` (unless the environment already names a policy), set when this module
  is imported, before torch loads libgomp (libgomp reads it once, when it is loaded): idle OpenMP
  threads sleep instead of spinning on cores another process needs.
- A lease per process: a file ``<pid>.lease`` under the user's runtime folder
  (``$XDG_RUNTIME_DIR/kbengine/threads``, else ``<tmp>/kbengine-<uid>/threads``), held under an
  exclusive ``flock`` for the process's life. The kernel drops the lock when a process dies, so a
  lease nobody holds is stale and is removed; pids are never trusted. Each live process's share is
  the cores divided by the number of live leases (the remainder to the oldest leases), and its
  torch threads are that share divided by its ``workers``.

:func:`fit` is called at the start of each encoder call, on the calling thread (torch's thread
count is per thread), and re-counts the leases at most every :data:`RECHECK_S` seconds, so a
process alone takes every core again once the others have gone."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import fcntl
import tempfile
import threading
import time
from pathlib import Path

RECHECK_S = 0.2
"""Seconds between two counts of the leases on one thread."""

_lock = threading.Lock()
_lease: tuple[int, int] | None = None  # (pid, fd) of this process's lease
_local = threading.local()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def lease_dir() -> Path:
    """The per-user folder of leases."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "kbengine" if runtime else Path(tempfile.gettempdir()) / f"kbengine-{os.getuid()}"
    return base / "threads"


def _hold() -> Path:
    """Take this process's lease (once per process; a forked child takes its own)."""
    global _lease
    folder = lease_dir()
    path = folder / f"{os.getpid()}.lease"
    with _lock:
        if _lease is None or _lease[0] != os.getpid():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            _lease = (os.getpid(), fd)
    return path


def live_leases() -> list[str]:
    """The names of the leases held by live processes, oldest first (this process's included);
    stale leases are removed."""
    own = _hold()
    live: list[tuple[float, str]] = []
    for path in lease_dir().glob("*.lease"):
        try:
            stamp = path.stat().st_mtime
            if path != own:
                fd = os.open(path, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # held: its process is alive
                else:
                    path.unlink(missing_ok=True)  # nobody holds it: its process has gone
                    continue
                finally:
                    os.close(fd)
        except FileNotFoundError:
            continue
        live.append((stamp, path.name))
    return [name for _, name in sorted(live)]


def share() -> int:
    """This process's cores: all of them divided among the live leases, at least 1."""
    names = live_leases()
    n, total = len(names), cores()
    rank = names.index(f"{os.getpid()}.lease") if f"{os.getpid()}.lease" in names else n - 1
    return max(1, total // n + (1 if rank < total % n else 0))


def threads_for(explicit: int, workers: int, shared: bool) -> int:
    """torch threads: ``explicit`` when set, else the share (or every core when ``shared`` is
    False) divided by ``workers``, at least 1."""
    if explicit:
        return explicit
    return max(1, (share() if shared else cores()) // workers)


def fit(explicit: int, workers: int, shared: bool, force: bool = False) -> int:
    """Set the calling thread's torch threads under the policy (re-counted at most every
    :data:`RECHECK_S` s unless ``force``); returns the count."""
    import torch

    now = time.monotonic()
    if not force and now - getattr(_local, "checked", -RECHECK_S) < RECHECK_S:
        return torch.get_num_threads()
    _local.checked = now
    threads = threads_for(explicit, workers, shared)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _forget_after_fork() -> None:
    global _lease
    _lease = None
    _local.__dict__.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
