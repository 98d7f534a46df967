"""The checkpoints on disk: `python -m chessbrain_jax.registry [JOB] [--checkpoint-dir DIR] [--json]`.

Without a job it lists the jobs under the checkpoint folder with their newest step; with one it lists that job's
complete checkpoints with step, save time, episode, games, loss and the last evaluation score, read from each
checkpoint's metadata, and whether it still holds the replay buffer an exact resume needs (`--keep-replay`). Load any of them with `player.load_player(path)` or name them to the arena.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

from chessbrain_jax.config import ConfigError, OneLineParser

PROG = "python -m chessbrain_jax.registry"
_COLUMNS = (("step", "step"), ("saved_at", "saved (UTC)"), ("episode", "episode"), ("games", "games"),
            ("loss", "loss"), ("eval_score", "eval score"), ("eval_opponent", "eval opponent"),
            ("resumable", "resumable"))


def list_jobs(checkpoint_dir: str) -> dict[str, int]:
    """{job id: newest complete step} for every job with checkpoints under `checkpoint_dir`."""
    from chessbrain_jax.storage import checkpoint

    jobs: dict[str, int] = {}
    for name in sorted(os.listdir(checkpoint_dir)):
        match = checkpoint.STEP_FOLDER.match(name)
        if match is None:
            continue
        found = checkpoint.list_checkpoints(checkpoint_dir, match["job"])
        if found:
            jobs[match["job"]] = found[-1].step
    return jobs


def describe_job(checkpoint_dir: str, job_id: str) -> list[dict[str, Any]]:
    """One row per complete checkpoint of `job_id`, oldest first (metrics are None where a checkpoint lacks them)."""
    from chessbrain_jax.storage import checkpoint

    rows = []
    for info in checkpoint.list_checkpoints(checkpoint_dir, job_id):
        try:
            with open(os.path.join(info.path, "meta", "metadata"), encoding="utf-8") as stream:
                meta = json.load(stream)
        except (OSError, ValueError):
            meta = {}
        metrics = meta.get("metrics") or {}
        evaluation = metrics.get("eval") or {}
        rows.append({"step": info.step, "path": info.path, "saved_at": info.saved_at,
                     "episode": meta.get("episode"), "games": meta.get("games_finished"),
                     "loss": metrics.get("loss"), "eval_score": evaluation.get("score"),
                     "eval_opponent": evaluation.get("opponent"),
                     "resumable": "yes" if checkpoint.has_run(info.path) else "no (network only)"})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    header = [title for _, title in _COLUMNS] + ["path"]
    body = [[_cell(row[name]) for name, _ in _COLUMNS] + [row["path"]] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *body])


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description="List jobs and their checkpoints.")
    parser.add_argument("job", nargs="?", help="job id (default: list the jobs)")
    parser.add_argument("--checkpoint-dir", default="./checkpoints")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    try:
        args = parser.parse_args(argv)
        if not os.path.isdir(args.checkpoint_dir):
            raise ConfigError(f"--checkpoint-dir {args.checkpoint_dir} is not a folder")
        if args.job is None:
            jobs = list_jobs(args.checkpoint_dir)
            print(json.dumps(jobs) if args.json else "\n".join(f"{job}  latest step {step}"
                                                               for job, step in jobs.items()) or "no jobs")
            return 0
        rows = describe_job(args.checkpoint_dir, args.job)
        if not rows:
            raise ConfigError(f"no checkpoints of job {args.job!r} under {os.path.abspath(args.checkpoint_dir)}")
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(rows) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
