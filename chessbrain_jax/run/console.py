"""What the run tells the user, and the errors it reports as one line."""

from __future__ import annotations

import os
import sys

PROG = "chessbrain_jax.train"
_voice = {"on": True}


class UsageError(Exception):
    """A problem with what the user asked for (device, output folders); reported as one line, exit status 2."""


class TrainingDiverged(Exception):
    """Every update of an episode had a non-finite gradient; the last good state was checkpointed."""


class CheckpointWriteError(Exception):
    """A checkpoint could not be written (disk full, file size limit, I/O error); earlier ones are intact."""


def checkpoint_write_error(folder: str, error: BaseException) -> CheckpointWriteError:
    """One line naming the folder and the system's reason (Orbax reports it deep inside a tensorstore message)."""
    import re

    text = str(error)
    code = re.search(r"os_error_code='(\d+)'", text)
    reason = os.strerror(int(code[1])) if code else (text.splitlines() or [type(error).__name__])[0][:200]
    return CheckpointWriteError(f"checkpoint {folder} could not be written ({reason}); earlier checkpoints are intact "
                                "and an unfinished one is ignored: make room, then continue with --resume")


def say(message: str) -> None:
    """One line on stderr, from the job's one voice (process 0 of a multi-process job)."""
    if not _voice["on"]:
        return
    print(f"[{PROG}] {message}", file=sys.stderr, flush=True)


def set_voice(on: bool) -> None:
    _voice["on"] = on
