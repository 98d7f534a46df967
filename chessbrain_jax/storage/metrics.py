"""Metrics out of the process: `metrics.jsonl`, TensorBoard events, `run.json`, and the terminal progress line.

All files of a job go to `<log-dir>/<job-id>/`. Each JSONL record is written whole and flushed, so a killed run
leaves only complete lines; TensorBoard events are flushed at every checkpoint and at exit.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Mapping, TextIO


def _plain(value: Any) -> Any:
    """A JSON-ready Python scalar from a numpy/jax scalar (non-finite floats become null)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'loss': 1}} -> {'train/loss': 1}: TensorBoard tags."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, tag + "/"))
        else:
            flat[tag] = _plain(value)
    return flat


class MetricsWriter:
    """Appends one JSON object per call to `metrics.jsonl` and the same numbers as TensorBoard scalars."""

    def __init__(self, job_dir: str, purge_step: int | None = None):
        """`purge_step`: on resume, TensorBoard hides events at and after this step from earlier runs."""
        from tensorboardX import SummaryWriter

        os.makedirs(job_dir, exist_ok=True)
        self.path = os.path.join(job_dir, "metrics.jsonl")
        self._jsonl = open(self.path, "a", encoding="utf-8")
        self._tensorboard = SummaryWriter(logdir=job_dir, flush_secs=30, purge_step=purge_step)

    def write(self, step: int, record: Mapping[str, Any]) -> None:
        flat = flatten(record)
        self._jsonl.write(json.dumps(flat, sort_keys=False) + "\n")
        self._jsonl.flush()
        for tag, value in flat.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and tag not in ("step",):
                self._tensorboard.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self._jsonl.flush()
        os.fsync(self._jsonl.fileno())
        self._tensorboard.flush()

    def close(self) -> None:
        self.flush()
        self._jsonl.close()
        self._tensorboard.close()


def write_text_atomically(path: str, text: str) -> None:
    """Writes `path` via a synced temporary file and a rename, so a crash leaves the old file or the new, never half."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_json_atomically(path: str, data: Mapping[str, Any]) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")



class NoWriter:
    """Stands in for `MetricsWriter` in processes other than 0 of a multi-process job."""

    def write(self, step: int, record: Mapping[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

class Progress:
    """A one-line progress bar on a terminal (episodes, positions/s, ETA); plain lines when quiet or not a tty."""

    def __init__(self, total: int, quiet: bool = False, stream: TextIO | None = None, done: int = 0,
                 silent: bool = False):
        """`done`: episodes already completed (a resumed job), so the ETA counts only this run's pace; `silent`
        prints nothing (the processes other than 0 of a multi-process job)."""
        self.total, self.silent = total, silent
        self.stream = stream or sys.stderr
        self.live = not quiet and self.stream.isatty()
        self.started = time.monotonic()
        self.already_done = done

    def update(self, done: int, text: str) -> None:
        if self.silent:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / max(done - self.already_done, 1) * (self.total - done)
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        line = f"episode {done}/{self.total} [{bar}] {text} | elapsed {elapsed:5.0f}s eta {eta:5.0f}s"
        if self.live:
            self.stream.write("\r" + line[:200].ljust(120))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
