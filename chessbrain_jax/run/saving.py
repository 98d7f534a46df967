"""The save rules: when a checkpoint is written, and how a failed write is reported."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from chessbrain_jax.run.console import checkpoint_write_error, say


class GracefulStop:
    """SIGINT/SIGTERM ask the loop to stop after the current episode (with a checkpoint); a second SIGINT aborts."""

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, number, frame):
        name = signal.Signals(number).name
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = name
        say(f"{name}: finishing the current episode, then saving a checkpoint (Ctrl-C again to abort)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def due(episode: int, config, stopping: bool) -> bool:
    """A checkpoint is due every `checkpoint_interval` episodes, after the last one, and when the job stops."""
    return episode % config.checkpoint_interval == 0 or episode == config.episodes or stopping


class Saver:
    """Writes the loop's checkpoints through an Orbax manager, one asynchronous save at a time; any failure
    becomes one `CheckpointWriteError` line naming the folder."""

    def __init__(self, manager, config, checkpoint_dir: str, writer, prunes: bool = True):
        self.manager, self.config, self.checkpoint_dir, self.writer = manager, config, checkpoint_dir, writer
        self.prunes = prunes  # this process removes old replay buffers (the writer process of a job)
        self.failed = False

    def save(self, step: int, train_state, key, run_state, meta: dict[str, Any]) -> None:
        """Saves unless `step` is saved already (no optimizer step since: nothing new); flushes the metrics."""
        from chessbrain_jax.storage import checkpoint

        if step in self.manager.all_steps():
            return
        self._guarded(self.checkpoint_dir, self.manager.wait_until_finished)  # the previous save's failure first
        self._prune()
        folder = os.path.join(self.checkpoint_dir, f"{self.config.job_id}_step{step}")
        meta = {**meta, "metrics": json.loads(json.dumps(meta.get("metrics", {}), default=float))}
        self._guarded(folder, lambda: checkpoint.save(self.manager, train_state, key, run_state, meta))
        self.writer.flush()

    def _prune(self) -> None:
        """Old checkpoints give up their replay buffers once a newer save is complete (`--keep-replay`). A failure
        costs disk, not data: it is said in one line and the run goes on."""
        from chessbrain_jax.storage import checkpoint

        if not self.prunes:
            return
        try:
            checkpoint.prune_runs(self.checkpoint_dir, self.config.job_id, self.config.keep_replay)
        except OSError as error:
            say(f"warning: could not remove an old replay buffer under {self.checkpoint_dir} "
                f"({error.strerror or error}); the run goes on")

    def _guarded(self, folder: str, work) -> None:
        try:
            work()
        except Exception as error:
            self.failed = True
            raise checkpoint_write_error(folder, error) from error

    def close(self) -> None:
        """Waits for the last save and closes the manager (a failure here is reported unless one already is)."""
        try:
            self.manager.wait_until_finished()
            self.manager.close()
        except Exception as error:
            if not self.failed:
                raise checkpoint_write_error(self.checkpoint_dir, error) from error
        else:
            self._prune()


def quiet_failed_write_reports() -> None:
    """Keeps a failed asynchronous save from flooding stderr; the caller reports the failure in one line instead.

    When a write fails (disk full), Orbax's writer threads log the tensorstore error with tracebacks through absl,
    and tensorstore's callbacks into the closed asyncio loops of those threads raise "Event loop is closed", which
    Python prints as unraisable exceptions. The error itself still surfaces from `wait_until_finished`.
    """

    def from_orbax(record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("[process="):  # Orbax's prefix on its own log lines
            return True
        frame = record.exc_info[2] if record.exc_info else None
        while frame is not None:
            if f"{os.sep}orbax{os.sep}" in frame.tb_frame.f_code.co_filename:
                return True
            frame = frame.tb_next
        return False

    def orbax_errors(record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and from_orbax(record))

    logging.getLogger("absl").addFilter(orbax_errors)
    default = sys.unraisablehook

    def closed_loops(unraisable) -> None:
        if not (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"):
            default(unraisable)

    sys.unraisablehook = closed_loops
