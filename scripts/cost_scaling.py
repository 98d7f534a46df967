"""How self-play cost grows with parallel games, simulations and network size: a bench sweep, a table and a plot.

Each point is one `python -m chessbrain_jax.bench --json` run in a fresh process, varying one setting from the
centre point (64 games, 32 simulations, 64 channels x 6 blocks). Prints a Markdown table; `--json FILE` writes the
raw bench results and `--plot FILE` a PNG (needs matplotlib).

    python scripts/cost_scaling.py --cpu-devices 2 --json docs/results/cost-scaling-cpu2.json \\
        --plot docs/results/cost-scaling-cpu2.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CENTRE = {"selfplay_batch": 64, "simulations": 32, "channels": 64, "blocks": 6}
SWEEPS = {
    "selfplay_batch": [{"selfplay_batch": games} for games in (16, 32, 64, 128)],
    "simulations": [{"simulations": sims} for sims in (8, 16, 32, 64)],
    "network": [{"channels": c, "blocks": b} for c, b in ((32, 2), (64, 3), (64, 6), (64, 10), (128, 6))],
}


def bench(point: dict, cpu_devices: int, duration: float) -> dict:
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in point.items()]
    command = [sys.executable, "-m", "chessbrain_jax.bench", "--json", f"--duration={duration}",
               f"--cpu-devices={cpu_devices}", *flags]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"bench {' '.join(flags)} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| sweep | games | simulations | network | MFLOP/position | positions/s | ms/position | simulations/s "
             "| self-play MFU | tree KB/node |", "|" + " --- |" * 10]
    for row in rows:
        r = row["result"]
        lines.append(
            f"| {row['sweep']} | {r['selfplay_batch']} | {r['simulations']} | {r['channels']}x{r['blocks']} | "
            f"{r['network_flops_per_position'] / 1e6:.1f} | {r['selfplay_positions_per_s']:.1f} | "
            f"{1000 / r['selfplay_positions_per_s']:.1f} | {r['simulations_per_s']:.0f} | {r['selfplay_mfu']:.0%} | "
            f"{(r['embedding_bytes_per_node'] + r['statistics_bytes_per_node']) / 1024:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [panel for panel in (("selfplay_batch", "parallel games", lambda r: r["selfplay_batch"]),
                                  ("simulations", "simulations per move", lambda r: r["simulations"]),
                                  ("network", "network MFLOP per position",
                                   lambda r: r["network_flops_per_position"] / 1e6))
              if any(row["sweep"] == panel[0] for row in rows)]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False)
    for axis, (sweep, label, x_of) in zip(axes[0], panels):
        results = [row["result"] for row in rows if row["sweep"] == sweep]
        xs = [x_of(r) for r in results]
        axis.plot(xs, [r["selfplay_positions_per_s"] for r in results], "o-", label="positions/s")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        values = [r["selfplay_positions_per_s"] for r in results]
        axis.set_ylim(min(values) / 2, max(values) * 2)  # at least a 4x range: a flat line must look flat
        axis.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_xlabel(label)
        axis.set_ylabel("self-play positions/s")
        mfu = axis.twinx()
        mfu.plot(xs, [100 * r["selfplay_mfu"] for r in results], "s--", color="tab:orange", label="MFU %")
        mfu.set_ylabel("self-play MFU %", color="tab:orange")
        mfu.set_ylim(0, 100)
        if sweep == "network":
            for x, r in zip(xs, results):
                axis.annotate(f"{r['channels']}x{r['blocks']}", (x, r["selfplay_positions_per_s"]), fontsize=8,
                              textcoords="offset points", xytext=(4, 4))
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-devices", type=int, default=1, help="passed to bench (0 = one per core)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per stage of each bench")
    parser.add_argument("--sweeps", nargs="+", choices=sorted(SWEEPS), default=list(SWEEPS))
    parser.add_argument("--json", help="write the bench results to this file")
    parser.add_argument("--plot", help="write a PNG plot to this file")
    args = parser.parse_args()
    rows = []
    for sweep in args.sweeps:
        for change in SWEEPS[sweep]:
            point = dict(CENTRE, **change)
            rows.append({"sweep": sweep, "result": bench(point, args.cpu_devices, args.duration)})
            print(f"{sweep}: {point} -> {rows[-1]['result']['selfplay_positions_per_s']:.1f} positions/s",
                  file=sys.stderr, flush=True)
    print(table(rows))
    first = rows[0]["result"]
    title = f"self-play cost on {first['device']} ({first['devices']} XLA device(s)), jax {first['jax']}"
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"title": title, "rows": rows}, handle, indent=1)
    if args.plot:
        plot(rows, args.plot, title)


if __name__ == "__main__":
    main()
