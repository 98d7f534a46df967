"""`python -m chessbrain_jax.uci`: the network as a UCI engine, so it plays in any chess GUI.

    python -m chessbrain_jax.uci --checkpoint checkpoints/myjob_step1200
    python -m chessbrain_jax.uci --checkpoint-dir checkpoints --job myjob       # the job's latest checkpoint
    python -m chessbrain_jax.uci --channels 8 --blocks 1 --simulations 8      # untrained and tiny: a protocol check

Without a checkpoint the engine plays an untrained network of the default size (`Config`'s 64 channels, 6 blocks,
smaller with --channels/--blocks): uniform prior and value 0, so its moves are what search alone finds -- a baseline,
not a player. --simulations and --search set the defaults of the UCI options Simulations and Search (otherwise the
network's training settings).

Search. mctx runs a whole search as one jitted call, and every distinct simulation count or batch size is a new XLA
compile (seconds), so `go` runs *chunks*: one compiled call searching `Threads` independent trees of `Simulations`
simulations from the current position (root parallelism: each tree draws its own Gumbel noise; PUCT trees, searched
without Dirichlet noise, differ only in mctx's tie-breaking, so Threads helps Gumbel much more than PUCT). `go nodes
N` runs ceil(N / (Simulations x Threads)) chunks; `go movetime` and clock limits run chunks while the next one is
expected to fit in the budget (remaining / movestogo (30 if not given) + increment / 2, at most half the remaining
time); `go infinite` and `go ponder` run until `stop` (or `ponderhit`); plain `go` runs one chunk; every `go` runs
at least one. Chunks share no tree: the statistics of all trees are summed over the legal moves (Gumbel's improved
policy, PUCT's visit fractions) and the argmax is played; a single tree plays its `best_action` (the most visited
move; Gumbel: among those, the one its improved policy rates highest, without self-play's Gumbel noise). `info depth nodes nps score cp time pv` follows every chunk (depth is the pv's length). One
compiled chunk is kept per (Simulations, Threads, Search); the default one compiles in the background at start-up and
`isready` waits until the current one is ready, so the GUI's clock does not pay for compiles.

Protocol: uci, isready (answered during a search too), ucinewgame, position startpos|fen <FEN> [moves ...], go
[nodes|movetime|wtime|btime|winc|binc|movestogo|infinite|ponder|searchmoves ...], stop, ponderhit, setoption name
Simulations|Threads|Search value ..., debug, quit. `go depth` and `go mate` are ignored (said in an info string). A
malformed command, an invalid FEN or an illegal move is answered with `info string error: ...` and changes nothing (a
rejected `position` keeps the previous position; a bad `go` argument is dropped and the search still answers
`bestmove`). The engine never answers an illegal move: a finished game (python-chess's rules) gets `bestmove 0000`,
and a position pgx already scores as drawn (threefold repetition, 50-move rule, 512 plies) the network's most likely
legal move.

stdout carries the protocol only (Python-level prints of libraries go to stderr). A bad flag or an unloadable
checkpoint is one line on stderr and exit status 2; --debug adds tracebacks, also of errors during the session. Set
JAX_COMPILATION_CACHE_DIR to keep XLA compiles across runs and make later start-ups fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import TYPE_CHECKING, Sequence

from chessbrain_jax.config import ConfigError, OneLineParser, load_config
from chessbrain_jax.play.uci.engine import PROG, SEARCHES, Output, UciEngine, UsageError, one_line

if TYPE_CHECKING:
    from chessbrain_jax.play.player import NetworkPlayer


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
                        "(simulations per tree per chunk) [default: the network's training setting].")
    parser.add_argument("--search", choices=SEARCHES, help="Default of the Search option [default: the network's "
                        "training setting].")
    parser.add_argument("--channels", metavar="N", help="Untrained network only: tower width [default: 64].")
    parser.add_argument("--blocks", metavar="N", help="Untrained network only: residual blocks [default: 6].")
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    protocol = sys.stdout
    try:
        args = parse_args(argv)
        sys.stdout = sys.stderr  # from here on stray prints of libraries must not corrupt the protocol
        engine = UciEngine(load_player(args), Output(protocol), debug=args.debug)
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
