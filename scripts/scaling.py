"""Throughput of the train loop on 1, 2, 4... devices and in producer/consumer mode, measured side by side.

Each case is a real `python -m chessbrain_jax.train` run in a fresh process (the device count is fixed when JAX
starts; on a CPU, `--cpu-devices N` splits the host into N XLA devices with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`). The figures are medians over the episodes after the first
(compile and warm-up excluded) of the run's own metrics: self-play positions/s, train samples/s, and the wall time
of an episode (self-play and training together).

    python scripts/scaling.py --cpu-devices 1 2 4 --producers 0 2 --episodes 5
    python scripts/scaling.py --cpu-devices 4 --producers 0 2 -- --channels 64 --blocks 6

Arguments after `--` go to every training run. Prints a Markdown table; `--json FILE` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

DEFAULTS = ["--selfplay-batch", "64", "--plies-per-episode", "16", "--mcts-simulations", "16",
            "--gumbel-considered-actions", "16", "--channels", "32", "--blocks", "2", "--batch-size", "64",
            "--replay-capacity", "16384", "--checkpoint-interval", "1000", "--quiet"]


def run_case(devices: int, producers: int, episodes: int, extra: list[str], folder: str) -> dict:
    job = f"d{devices}p{producers}"
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "chessbrain_jax.train", *DEFAULTS, "--episodes", str(episodes),
               "--producer-workers", str(producers), "--producer-queue-size", "2", "--job-id", job,
               "--log-dir", os.path.join(folder, "runs"), "--checkpoint-dir", os.path.join(folder, "ck"), *extra]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise SystemExit(f"{job} failed: {result.stderr.strip().splitlines()[-1]}")
    with open(os.path.join(folder, "runs", job, "metrics.jsonl"), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle][1:]
    times = [b["wall_time_s"] - a["wall_time_s"] for a, b in zip(records, records[1:])]
    positions = records[0]["positions"] / records[0]["episode"]
    median = lambda name: statistics.median(r[name] for r in records)  # noqa: E731
    return {"devices": devices, "producers": producers, "selfplay_positions_per_s": median("selfplay_positions_per_s"),
            "train_samples_per_s": median("train_samples_per_s"), "episode_s": statistics.median(times),
            "positions_per_s_end_to_end": positions / statistics.median(times),
            "staleness_mean": median("producer/staleness_mean") if producers else 0.0}


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--producers", type=int, nargs="+", default=[0])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for devices in args.cpu_devices:
            for producers in args.producers:
                rows.append(run_case(devices, producers, args.episodes, extra, folder))
                print(f"done: {rows[-1]}", file=sys.stderr, flush=True)
    base = rows[0]["positions_per_s_end_to_end"]
    print("| devices | producers | self-play pos/s | train samples/s | episode s | end-to-end pos/s | vs first | "
          "staleness |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['devices']} | {row['producers']} | {row['selfplay_positions_per_s']:.0f} | "
              f"{row['train_samples_per_s']:.0f} | {row['episode_s']:.2f} | {row['positions_per_s_end_to_end']:.0f} | "
              f"{row['positions_per_s_end_to_end'] / base:.2f}x | {row['staleness_mean']:.1f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"command": sys.argv, "extra": extra, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
