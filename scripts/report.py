"""The tail the checkpoint-measuring scripts share: run, print the result as JSON (and write it), or one line and
exit status 2 for a checkpoint that cannot be loaded."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable


def report(name: str, measure: Callable[[], dict], json_path: str | None) -> int:
    """Calls `measure()`, prints its dict as JSON and writes it to `json_path` (atomically) when given; returns the
    exit status (2 with `<name>: <reason>` on stderr when the checkpoint cannot be loaded)."""
    from chessbrain_jax.storage import checkpoint
    from chessbrain_jax.storage.metrics import write_json_atomically

    try:
        result = measure()
    except checkpoint.CheckpointError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    if json_path:
        write_json_atomically(json_path, result)
    return 0
