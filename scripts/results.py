"""Strength along a training run: the job's checkpoints against a ladder of opponents, a plot and a JSON summary.

    python scripts/results.py --job cpu30 [--checkpoint-dir ./checkpoints] [--log-dir ./runs] [--out docs/results]

The ladder (`--ladder`, specs as the arena names players, separated by ';') defaults to the random mover, `greedy`
(one ply: mates, else the biggest capture), `minimax,depth=2` (alpha-beta on material) and Stockfish at skill 0
limited to depth 1; a rung that cannot start (no Stockfish installed) is left out with a note. The untrained network
(same architecture) and every `--every`-th checkpoint (always the last) play `--games` games against each rung; the
last checkpoint also plays `--final-games` against each, and its raw policy plays the untrained network's raw
policy. Writes `<out>/<job>.json`, `<out>/<job>.png` (loss, and each rung's score against training time with its
95% Wilson interval) and prints a Markdown table with score and Elo (95% CI) per rung. Needs matplotlib (`pip install
'.[plot]'`). One NetworkPlayer is reused across checkpoints (only the parameters change), so search compiles once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from chessbrain_jax.play import arena, player
from chessbrain_jax.storage import checkpoint
from chessbrain_jax.storage.metrics import write_json_atomically


def wilson_interval(score: float, games: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson interval of a match score (draws count half); well defined at 0 and 1, unlike the Elo interval."""
    centre = (score + z * z / (2 * games)) / (1 + z * z / games)
    half = z * (score * (1 - score) / games + z * z / (4 * games * games)) ** 0.5 / (1 + z * z / games)
    return max(0.0, centre - half), min(1.0, centre + half)


def match(a, b, games: int, seed: int, opening_plies: int = 2) -> dict:
    started = time.monotonic()
    played = arena.play_match(a, b, games, opening_plies=opening_plies, seed=seed)
    summary = arena.summarise(played)
    summary["seconds"] = time.monotonic() - started
    print(f"  {arena.describe(a)} vs {arena.describe(b)}: +{summary['wins']} ={summary['draws']} "
          f"-{summary['losses']}, score {summary['score']:.3f}, Elo {summary['elo_text']} "
          f"({summary['seconds']:.0f}s)", file=sys.stderr, flush=True)
    return summary


def read_metrics(log_dir: str, job: str) -> list[dict]:
    path = os.path.join(log_dir, job, "metrics.jsonl")
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def training_seconds(metrics: list[dict]) -> list[dict]:
    """The records with `wall_time_s` made cumulative: a resumed job's clock restarts at 0 after each resume, so each
    segment is offset by the time its predecessor reached (the gap between a stop and its resume is not counted)."""
    offset, previous, out = 0.0, 0.0, []
    for record in metrics:
        if record["wall_time_s"] < previous:
            offset += previous
        previous = record["wall_time_s"]
        out.append(dict(record, wall_time_s=offset + previous))
    return out


def with_cumulative_time(results: dict) -> dict:
    """`results` (from `evaluate` or an older JSON) with cumulative training time in metrics and points."""
    metrics = training_seconds(results["metrics"])
    wall = {record["step"]: record["wall_time_s"] for record in metrics}
    points = [dict(point, minutes=wall.get(point["step"], 0.0) / 60) for point in results["points"]]
    return dict(results, metrics=metrics, points=points,
                final_minutes=wall.get(results["final_step"], 0.0) / 60)


DEFAULT_LADDER = "random; greedy; minimax,depth=2; stockfish,skill=0,depth=1"


def ladder_players(specs: str) -> dict:
    """{spec: player} for the ';'-separated specs that start (a missing Stockfish is reported and skipped)."""
    rungs = {}
    for spec in (part.strip() for part in specs.split(";")):
        if not spec:
            continue
        try:
            rungs[spec] = arena.parse_player(spec)
        except arena.ArenaError as error:
            print(f"results.py: rung {spec!r} left out: {error}", file=sys.stderr)
    return rungs


def evaluate(args) -> dict:
    checkpoints = checkpoint.list_checkpoints(args.checkpoint_dir, args.job)
    if not checkpoints:
        raise SystemExit(f"results.py: error: no checkpoints of job {args.job!r} in {args.checkpoint_dir}")
    metrics = training_seconds(read_metrics(args.log_dir, args.job))
    wall = {record["step"]: record["wall_time_s"] for record in metrics}
    chosen = checkpoints[args.every - 1::args.every]
    if chosen[-1] != checkpoints[-1]:
        chosen.append(checkpoints[-1])
    net = player.load_player(chosen[-1].path, simulations=args.simulations)
    config = net.config
    untrained = player.untrained_player(config, simulations=net.simulations, seed=config.seed)
    rungs = ladder_players(args.ladder)
    try:
        along = [("untrained", 0, untrained.params)] + [(f"step {info.step}", info.step, info.path) for info in chosen]
        points = [ladder_point(net, rungs, *checkpoint_at, wall, args) for checkpoint_at in along if args.games]
        final = final_matches(net, untrained, rungs, chosen[-1], args)
    finally:
        for made in rungs.values():
            if hasattr(made, "close"):
                made.close()
    return {"job": args.job, "config": config.to_dict(), "player": net.description.replace(net.name, args.job),
            "ladder": {spec: arena.describe(made) for spec, made in rungs.items()}, "points": points, "final": final,
            "final_step": chosen[-1].step, "final_minutes": wall.get(chosen[-1].step, 0.0) / 60,
            "metrics": [{name: record.get(name) for name in ("step", "wall_time_s", "loss", "policy_loss",
                                                             "value_loss", "value_targets_known")}
                        for record in metrics]}


def ladder_point(net, rungs: dict, label: str, step: int, params, wall: dict, args) -> dict:
    """`net` with `params` (a checkpoint path, or the arrays) against every rung, `args.games` games each."""
    if isinstance(params, str):
        params = checkpoint.load_network(params).params
    net.params, net.name = params, f"{args.job}_step{step}" if step else "untrained"
    print(f"{label} ({wall.get(step, 0.0) / 60:.1f} min):", file=sys.stderr, flush=True)
    return {"step": step, "minutes": wall.get(step, 0.0) / 60,
            "ladder": {spec: match(net, made, args.games, seed=step) for spec, made in rungs.items()}}


def final_matches(net, untrained, rungs: dict, last, args) -> dict:
    """The last checkpoint: `--final-games` against every rung, and its raw policy against the untrained one's."""
    print("final checkpoint:", file=sys.stderr, flush=True)
    net.params, net.name = checkpoint.load_network(last.path).params, f"{args.job}_step{last.step}"
    final = {spec: match(net, made, args.final_games, seed=12345) for spec, made in rungs.items()}
    trained_raw = player.NetworkPlayer(net.apply_fn, net.params, net.config, simulations=0, name=net.name)
    untrained_raw = player.NetworkPlayer(untrained.apply_fn, untrained.params, net.config, simulations=0,
                                         name="untrained")
    final["raw_vs_untrained_raw"] = match(trained_raw, untrained_raw, args.final_games, seed=54321, opening_plies=4)
    return final


def as_ladder(results: dict) -> dict:
    """Results of any version with every point's matches under "ladder" (older files kept "random" and
    "stockfish" beside "step")."""
    names = {"random": "random", "stockfish": results.get("stockfish") or "stockfish"}
    points = [point if "ladder" in point else
              {"step": point["step"], "minutes": point["minutes"],
               "ladder": {names[key]: point[key] for key in ("random", "stockfish") if key in point}}
              for point in results["points"]]
    return dict(results, points=points)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (losses, scores) = plt.subplots(1, 2, figsize=(11, 4))
    minutes = [record["wall_time_s"] / 60 for record in results["metrics"]]
    for name in ("loss", "policy_loss", "value_loss"):
        losses.plot(minutes, [record[name] for record in results["metrics"]], label=name.replace("_", " "))
    losses.set(xlabel="training time (minutes)", ylabel="training loss", title=f"{results['job']}: loss")
    losses.legend()
    rungs = list(dict.fromkeys(spec for point in results["points"] for spec in point["ladder"]))
    for spec in rungs:
        shown = [point for point in results["points"] if spec in point["ladder"]]
        x = [point["minutes"] for point in shown]
        y = [point["ladder"][spec]["score"] for point in shown]
        bounds = [wilson_interval(p["ladder"][spec]["score"], p["ladder"][spec]["games"]) for p in shown]
        low = [y_ - lo for y_, (lo, _) in zip(y, bounds)]
        high = [hi - y_ for y_, (_, hi) in zip(y, bounds)]
        scores.errorbar(x, y, yerr=[low, high], marker="o", capsize=3,
                        label=f"vs {spec} ({shown[0]['ladder'][spec]['games']} games each)")
    scores.axhline(0.5, color="grey", linewidth=0.5)
    scores.set(xlabel="training time (minutes)", ylabel="score (win 1, draw 0.5)", ylim=(-0.02, 1.02),
               title=f"{results['player']}: arena score")
    scores.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def table(results: dict) -> str:
    """Markdown: one row per evaluated checkpoint and a final row, each rung's W/D/L (score) and Elo (95% CI)."""
    rungs = list(results.get("ladder") or dict.fromkeys(spec for point in results["points"]
                                                        for spec in point["ladder"]))
    rows = ["| checkpoint | minutes | " + " | ".join(f"vs {spec} | Elo (95% CI)" for spec in rungs) + " |",
            "| --- | --- |" + " --- | --- |" * len(rungs)]

    def cells(matches: dict) -> str:
        return " | ".join(f"{m['wins']}/{m['draws']}/{m['losses']} ({m['score']:.2f}) | {m['elo_text']}"
                          if (m := matches.get(spec)) else "- | -" for spec in rungs)

    for point in results["points"]:
        name = f"step {point['step']}" if point["step"] else "untrained"
        rows.append(f"| {name} | {point['minutes']:.1f} | {cells(point['ladder'])} |")
    final_games = max((m["games"] for spec, m in results["final"].items() if spec in rungs), default=0)
    rows.append(f"| final, {final_games} games | "
                f"{results['final_minutes']:.1f} | {cells(results['final'])} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True)
    parser.add_argument("--checkpoint-dir", default="./checkpoints")
    parser.add_argument("--log-dir", default="./runs")
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--every", type=int, default=1, help="evaluate every N-th checkpoint (and the last)")
    parser.add_argument("--ladder", default=DEFAULT_LADDER, help="opponents, ';'-separated arena specs "
                        f"(default {DEFAULT_LADDER!r})")
    parser.add_argument("--games", type=int, default=20, help="games against each rung per checkpoint (0: final "
                        "matches only)")
    parser.add_argument("--final-games", type=int, default=100, help="games of the last checkpoint against each rung")
    parser.add_argument("--simulations", type=int, default=None, help="search simulations (default: the job's)")
    parser.add_argument("--replot", action="store_true", help="redraw the plot and table from <out>/<job>.json")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be >= 1")
    if args.replot:
        with open(os.path.join(args.out, f"{args.job}.json"), encoding="utf-8") as stream:
            results = as_ladder(with_cumulative_time(json.load(stream)))
        write_json_atomically(os.path.join(args.out, f"{args.job}.json"), results)
    else:
        results = evaluate(args)
        os.makedirs(args.out, exist_ok=True)
        write_json_atomically(os.path.join(args.out, f"{args.job}.json"), results)
    plot(results, os.path.join(args.out, f"{args.job}.png"))
    print(table(results))
    final = results["final"]
    for name, summary in final.items():
        print(f"final {name}: +{summary['wins']} ={summary['draws']} -{summary['losses']}, score "
              f"{summary['score']:.3f}, Elo {summary['elo_text']}, terminations {summary['terminations']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
