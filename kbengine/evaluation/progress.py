"""The progress callback every evaluation takes: (done, total, current item)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Progress = Callable[[int, int, str], Any]
