"""The learning diagnostics of every checkpoint of a job, after the fact: the probe metrics that `--probe-interval`
logs during training (policy top-1/top-3 agreement with Stockfish, top-1 where its move captures, value MSE, correlation and sign against its
evaluation), for a job trained without them or with an older probe set.

    python scripts/probe_checkpoints.py --job cpu30g [--checkpoint-dir ./checkpoints] [--probes FILE] [--json OUT]

Prints one Markdown row per checkpoint; `--json` also writes them as a list of objects.
"""

from __future__ import annotations

import argparse
import json
import sys

from chessbrain_jax.play import diagnostics
from chessbrain_jax.storage import checkpoint

COLUMNS = ("top1", "top3", "top1_capture", "value_mse", "value_corr", "value_sign")


def probe_job(job: str, checkpoint_dir: str, probes: str) -> list[dict]:
    """[{"step", "episode", and each of `COLUMNS`}] for every checkpoint of `job`, oldest first."""
    rows, prober = [], None
    for info in checkpoint.list_checkpoints(checkpoint_dir, job):
        network = checkpoint.load_network(info.path)
        if prober is None:  # one compile: every checkpoint of a job has the same architecture
            prober = diagnostics.Diagnostics(lambda params, x: network.network.apply({"params": params}, x), probes)
        rows.append(dict(step=info.step, episode=network.meta.get("episode"), **prober(network.params)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True)
    parser.add_argument("--checkpoint-dir", default="./checkpoints")
    parser.add_argument("--probes", default=diagnostics.PROBES)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        rows = probe_job(args.job, args.checkpoint_dir, args.probes)
    except (checkpoint.CheckpointError, OSError, ValueError) as error:
        print(f"probe_checkpoints: {error}", file=sys.stderr)
        return 2
    if not rows:
        print(f"probe_checkpoints: no checkpoints of job {args.job!r} under {args.checkpoint_dir}", file=sys.stderr)
        return 2
    print("| step | episode | " + " | ".join(COLUMNS) + " |")
    print("| --- | --- |" + " --- |" * len(COLUMNS))
    for row in rows:
        print(f"| {row['step']} | {row['episode']} | " + " | ".join(f"{row[c]:.3f}" for c in COLUMNS) + " |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(rows, stream, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
