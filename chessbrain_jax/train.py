"""`python -m chessbrain_jax.train`: train a network by self-play. Flags, a YAML file and the environment fill one
`Config` (`config`); the job itself is `run.orchestrator.run`. Every failure a user can cause is one line on stderr
and a non-zero exit status (2 for bad input); `--debug` adds the traceback."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Sequence

from chessbrain_jax.config import ConfigError, load_config
from chessbrain_jax.run.console import PROG, CheckpointWriteError, TrainingDiverged, UsageError
from chessbrain_jax.run.orchestrator import RunResult, run
from chessbrain_jax.run.saving import quiet_failed_write_reports

__all__ = ["RunResult", "main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    if not debug:
        quiet_failed_write_reports()
    try:
        config, options = load_config(argv)
        run(config, resume=options["resume"], overwrite=options["overwrite"], explicit=options["explicit"])
    except (ConfigError, UsageError, TrainingDiverged, CheckpointWriteError, OSError) as error:
        return _report(error, debug)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


def _report(error: Exception, debug: bool) -> int:
    """One line naming the problem; the exit status says its kind (2: bad input, 1: the run failed)."""
    if debug and not isinstance(error, TrainingDiverged):
        traceback.print_exc()
    if isinstance(error, OSError) and not isinstance(error, (ConfigError, UsageError)):
        where = f": {error.filename}" if error.filename else ""  # disk full, permissions, a folder that vanished
        print(f"{PROG}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    print(f"{PROG}: error: {error}", file=sys.stderr)
    if isinstance(error, CheckpointWriteError):
        sys.stderr.flush()
        os._exit(1)  # Orbax's writer threads would report the failure again while the interpreter shuts down
    return 2 if isinstance(error, (ConfigError, UsageError)) else 1


if __name__ == "__main__":
    sys.exit(main())
