"""`python -m chessbrain_jax.uci`: the network as a UCI engine, so it plays in any chess GUI.

    python -m chessbrain_jax.uci --checkpoint checkpoints/myjob_step1200
    python -m chessbrain_jax.uci --checkpoint-dir checkpoints --job myjob       # the job's latest checkpoint
    python -m chessbrain_jax.uci --channels 8 --blocks 1 --simulations 8      # untrained and tiny: a protocol check
    python -m chessbrain_jax.uci --checkpoint checkpoints/myjob_step1200 --bench 1024   # nodes/s, then exit

The user manual (options, how `go` spends its budget, errors) is docs/uci.md; the engine is `play/uci/`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import TYPE_CHECKING, Sequence

from chessbrain_jax.config import ConfigError, OneLineParser, load_config
from chessbrain_jax.play.uci.protocol import SEARCHES, Output, UciEngine, one_line
from chessbrain_jax.storage import compile_cache

if TYPE_CHECKING:
    from chessbrain_jax.play.player import NetworkPlayer

PROG = "chessbrain_jax.uci"


class UsageError(Exception):
    """A bad flag or checkpoint: one line on stderr, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=f"python -m {PROG}", description="A UCI chess engine playing a chessbrain_jax "
                            "network with mctx search. Without a checkpoint it plays an untrained network.")
    parser.add_argument("--checkpoint", metavar="PATH", help="A checkpoint step folder "
                        "<checkpoint-dir>/<job-id>_step<N>.")
    parser.add_argument("--checkpoint-dir", metavar="DIR", help="With --job: the checkpoint root to look in.")
    parser.add_argument("--job", metavar="JOB", help="With --checkpoint-dir: play this job's latest checkpoint.")
    parser.add_argument("--simulations", metavar="N", type=_positive_int, help="Default of the Simulations option "
                        "(the tree size of a go without limits) [default: the network's training setting].")
    parser.add_argument("--hash", metavar="MB", type=_positive_int, help="Default of the Hash option (MiB of search "
                        "tree) [default: 128].")
    parser.add_argument("--search", choices=SEARCHES, help="Default of the Search option [default: the network's "
                        "training setting].")
    parser.add_argument("--channels", metavar="N", help="Untrained network only: tower width [default: 64].")
    parser.add_argument("--blocks", metavar="N", help="Untrained network only: residual blocks [default: 6].")
    parser.add_argument("--bench", metavar="NODES", type=_positive_int, nargs="?", const=1024, help="Search a "
                        "fixed set of positions with go nodes NODES [default: 1024], print nodes/s and exit.")
    compile_cache.add_argument(parser)
    parser.add_argument("--debug", action="store_true", help="Tracebacks on stderr for errors.")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The flags, checked without importing jax: a typo is reported in milliseconds."""
    args = build_parser().parse_args(list(argv))
    if args.checkpoint is not None and (args.checkpoint_dir is not None or args.job is not None):
        raise UsageError("--checkpoint excludes --checkpoint-dir/--job")
    if (args.checkpoint_dir is None) != (args.job is None):
        raise UsageError("--checkpoint-dir and --job go together")
    if (args.checkpoint is not None or args.job is not None) and (args.channels or args.blocks):
        raise UsageError("--channels/--blocks shape an untrained network; a checkpoint brings its own")
    if args.checkpoint is not None and not os.path.exists(args.checkpoint):
        raise UsageError(f"checkpoint {args.checkpoint} does not exist")
    if args.checkpoint_dir is not None and not os.path.isdir(args.checkpoint_dir):
        raise UsageError(f"checkpoint folder {args.checkpoint_dir} does not exist")
    return args


def load_player(args: argparse.Namespace) -> NetworkPlayer:
    """The network the flags name: a checkpoint, a job's latest checkpoint, or an untrained one."""
    from chessbrain_jax.play import player
    from chessbrain_jax.storage import checkpoint

    compile_cache.enable(args.compile_cache, note=lambda text: print(f"{PROG}: {text}", file=sys.stderr))
    try:
        if args.checkpoint is not None:
            return player.load_player(args.checkpoint, simulations=args.simulations, search=args.search)
        if args.job is not None:
            return player.load_player(args.job, args.checkpoint_dir, simulations=args.simulations, search=args.search)
        shape = [text for flag, value in (("--channels", args.channels), ("--blocks", args.blocks))
                 if value is not None for text in (flag, value)]
        config = load_config(shape, environ={})[0]
        return player.untrained_player(config, simulations=args.simulations, search=args.search)
    except (checkpoint.CheckpointError, ConfigError, OSError) as error:
        raise UsageError(one_line(error)) from error


def _bench(args: argparse.Namespace, out) -> int:
    from chessbrain_jax.play.uci.bench import format_bench, run_bench

    player = load_player(args)
    print(f"{PROG}: bench of {player.description}, go nodes {args.bench} on each position (compiling first)",
          file=sys.stderr)
    for line in format_bench(run_bench(player, args.bench, args.hash)):
        print(line, file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    protocol = sys.stdout
    try:
        args = parse_args(argv)
        if args.bench is not None:
            return _bench(args, protocol)
        sys.stdout = sys.stderr  # from here on stray prints of libraries must not corrupt the protocol
        engine = UciEngine(load_player(args), Output(protocol), debug=args.debug, hash_mb=args.hash)
        engine.warm_up()
        for line in iter(sys.stdin.readline, ""):
            if not engine.handle(line):
                break
        else:
            engine.finish_search()  # the end of input acts as quit
    except (UsageError, ConfigError) as error:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout = protocol
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # at once: a compile still running in a background thread cannot be interrupted
