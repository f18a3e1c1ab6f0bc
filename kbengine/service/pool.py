"""The bounded worker pool every model call goes through.

``workers`` threads (``KBENGINE_WORKERS``) run the encoder while torch uses ``cores / workers``
intra-op threads each (the engine's thread policy), so parallel requests never oversubscribe the
cores. At most ``queue`` requests wait: one more is refused at once (:class:`Busy`, a 503 with
``Retry-After``) instead of growing a backlog whose every request would time out.

Ingest jobs write while queries read: a readers-writer lock lets queries run together and gives an
ingest step the store alone, one source file at a time, so queries wait at most one file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the service is busy ({retry_after} s)")
        self.retry_after = retry_after


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back (no writer starves)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class WorkPool:
    """``workers`` threads for model calls, at most ``queue`` calls waiting."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.queue = queue
        self.lock = ReadWriteLock()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="kbengine-worker")
        self._pending = 0
        self._count = threading.Lock()

    @property
    def depth(self) -> int:
        """Calls submitted and not finished (running and waiting)."""
        return self._pending

    async def run(self, fn: Callable[[], T], *, write: bool = False) -> T:
        """Run ``fn`` on a worker under the read lock (the write lock with ``write``); :class:`Busy`
        when the queue is full."""
        with self._count:
            if self._pending >= self.workers + self.queue:
                raise Busy(retry_after=max(1, self._pending // max(1, self.workers)))
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._writing if write else self._reading, fn)
        finally:
            with self._count:
                self._pending -= 1

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a worker and wait for it (from a thread that is not the event loop's):
        ingest jobs do their model work on the workers' threads too, since every extra thread that
        runs torch gets its own OpenMP team, and idle teams slow the busy one down (measured: a
        forward pass 14 ms on one thread, 26 ms once a second thread has run torch)."""
        return self._executor.submit(fn).result()

    def _reading(self, fn: Callable[[], T]) -> T:
        with self.lock.reading():
            return fn()

    def _writing(self, fn: Callable[[], T]) -> T:
        with self.lock.writing():
            return fn()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
