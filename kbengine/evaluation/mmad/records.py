"""Resumable MMAD runs: answered questions appended to a JSONL file as they come."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import ValidationError

from kbengine.core.errors import InvalidInputError
from kbengine.evaluation.mmad.questions import validation_message
from kbengine.evaluation.mmad.scoring import MMADRecord

log = logging.getLogger(__name__)


class RecordLog:
    """Answered questions in a JSONL file, one :class:`MMADRecord` a line, appended as they come.

    An interrupted run may leave a partial last line: reading ignores it, and the first :meth:`append` cuts it
    off. Any other unreadable line is an error (:class:`InvalidInputError` naming the line)."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._repaired = False

    def _read(self) -> list[MMADRecord]:
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.path}: {exc}") from exc
        lines = data.split(b"\n")
        out = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(MMADRecord.model_validate_json(line))
            except ValidationError as exc:
                if number == len(lines):  # no newline after it: a write cut short by an interruption
                    log.warning("%s: ignoring a partial last line (an interrupted write)", self.path)
                    continue
                raise InvalidInputError(f"{self.path}, line {number}: not a record: {validation_message(exc)}") from exc
        return out

    def records(self) -> list[MMADRecord]:
        """The records in the file, one per key (the last one written wins), in order of first appearance."""
        by_key: dict[str, MMADRecord] = {}
        for record in self._read():
            by_key[record.key] = record
        return list(by_key.values())

    def done_keys(self) -> set[str]:
        """Keys of the questions already answered."""
        return {record.key for record in self._read()}

    def _repair(self) -> None:
        """Make the file end at a line boundary: drop a partial last line, or terminate a complete one."""
        self._repaired = True
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        try:
            MMADRecord.model_validate_json(data[cut:])
        except ValidationError:
            log.warning("%s: removing a partial last line (an interrupted write)", self.path)
            with self.path.open("r+b") as handle:
                handle.truncate(cut)
            return
        with self.path.open("ab") as handle:
            handle.write(b"\n")

    def append(self, record: MMADRecord) -> None:
        """Write ``record`` as one line and flush it (and fsync it when asked)."""
        if not self._repaired:
            self._repair()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(record.model_dump_json() + "\n")
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
