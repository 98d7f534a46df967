"""One typed, validated configuration object, filled from defaults < YAML < environment < flags.

Every field of `Config` is a command-line flag (`batch_size` -> `--batch-size`), a YAML key (`batch_size: 32`) and an
environment variable (`CHESSBRAIN_BATCH_SIZE=32`); `TENSORBOARD_LOG_DIR` also sets `log_dir`. This module imports
neither jax nor flax, so a mistyped flag is reported in milliseconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import sys
from typing import Any, Mapping, Sequence

ENV_PREFIX = "CHESSBRAIN_"
PGX_MAX_PLIES = 512  # pgx ends every chess game as a draw at 512 plies (the AlphaZero convention).


class ConfigError(ValueError):
    """A bad flag, YAML file/key/value or environment variable; the message is one line for the user."""


def _field(default, help: str, *, group: str, minimum=None, maximum=None, above=None, choices=None, flag=None):
    """A setting; `minimum`/`maximum` are inclusive bounds, `above` an exclusive lower bound."""
    return dataclasses.field(
        default=default,
        metadata=dict(help=help, group=group, minimum=minimum, maximum=maximum, above=above, choices=choices,
                      flag=flag),
    )


OLD = "flags of the ChessBrain pipeline (same names and defaults)"
RUN = "run, output and device"
PLAY = "self-play and search"
NET = "network"
LEARN = "learner and replay"
EVAL = "evaluation during training"


@dataclasses.dataclass(frozen=True)
class Config:
    """The resolved configuration of a training job. See docs/architecture.md for what an episode is."""

    # --- The old pipeline's flags, defaults kept.
    episodes: int = _field(4, "Episodes to run. One episode = every one of the --selfplay-batch parallel games plays "
                           "--plies-per-episode moves (unfinished games carry over), then the learner trains.",
                           group=OLD, minimum=1)
    batch_size: int = _field(16, "Replay samples per micro-batch (one gradient computation).", group=OLD, minimum=1)
    checkpoint_interval: int = _field(2, "Write a checkpoint every N episodes (and always after the last one).",
                                      group=OLD, minimum=1)
    exploration_rate: float = _field(0.1, "Epsilon: after search, play a uniformly random legal move with this "
                                     "probability.", group=OLD, minimum=0.0, maximum=1.0)
    exploration_plies: int = _field(0, "Random moves (--exploration-rate) only in a game's first N plies, for "
                                    "opening variety without spoiling the results of later positions. 0 = at "
                                    "every ply (the old pipeline's meaning).", group=PLAY, minimum=0)
    seed: int = _field(7, "Seed for network init, self-play and replay sampling.", group=OLD, minimum=0,
                       maximum=2**32 - 1)
    grad_accum_steps: int = _field(1, "Micro-batches accumulated (optax.MultiSteps) per optimizer step.",
                                   group=OLD, minimum=1)
    mcts_simulations: int = _field(32, "Search simulations per move.", group=OLD, minimum=1)
    mcts_cpuct: float = _field(1.5, "PUCT exploration constant (--search puct).", group=OLD, minimum=0.0)
    producer_workers: int = _field(0, "Asynchronous self-play producers. Accepted; takes effect with the scale-out "
                                   "work, until then the synchronous loop runs (said at start-up).",
                                   group=OLD, minimum=0)
    producer_queue_size: int = _field(16, "Bounded queue of produced episodes (with --producer-workers).",
                                      group=OLD, minimum=1)
    producer_device: str = _field("cpu", "Device for producers (with --producer-workers).", group=OLD,
                                  choices=("cpu", "gpu", "tpu", "auto"))
    no_amp: bool = _field(False, "Disable mixed precision: compute in float32 everywhere.", group=OLD)

    # --- Run, outputs, device.
    job_id: str = _field("", "Job name for log and checkpoint folders (default: a UTC timestamp).", group=RUN)
    log_dir: str = _field("", "Metrics folder root; the job writes <log-dir>/<job-id>/ (default: "
                          "$TENSORBOARD_LOG_DIR, else ./runs).", group=RUN)
    checkpoint_dir: str = _field("./checkpoints", "Checkpoint root; steps are <checkpoint-dir>/<job-id>_step<N>.",
                                 group=RUN)
    keep_checkpoints: int = _field(5, "Keep the newest N checkpoints of the job (0 keeps all).", group=RUN,
                                   minimum=0)
    keep_replay: int = _field(2, "Only the newest N checkpoints keep the replay buffer and games in progress (an "
                              "exact resume needs the newest; the one before is the fallback if it is corrupt); "
                              "older ones keep the network, optimizer and counters, and load everywhere else. "
                              "0 = every checkpoint keeps them.", group=RUN, minimum=0)
    device: str = _field("auto", "JAX platform to run on.", group=RUN, choices=("auto", "cpu", "gpu", "tpu"))
    precision: str = _field("auto", "Compute dtype: auto = bfloat16 on GPU/TPU, float32 on CPU (XLA:CPU runs bf16 "
                            "convolutions slower than float32); --no-amp forces float32.", group=RUN,
                            choices=("auto", "bfloat16", "float32"))
    log_every: int = _field(1, "Write metrics every N episodes.", group=RUN, minimum=1)
    quiet: bool = _field(False, "No progress bar; one plain line per logged episode.", group=RUN)
    cpu_devices: int = _field(1, "Split the host CPU into N XLA devices for data parallelism (0 = one per available "
                              "core, reduced to a divisor of --selfplay-batch and --batch-size). XLA runs one CPU "
                              "device's small operations on few cores; one device per core measured 1.8x faster on "
                              "2 cores (docs/scaling.md). Ignored when XLA_FLAGS already sets a count.", group=RUN,
                              minimum=0)
    coordinator_address: str = _field("", "Multi-process job: host:port of process 0's coordinator (default: "
                                      "$JAX_COORDINATOR_ADDRESS, or what JAX detects under SLURM / Open MPI).",
                                      group=RUN)
    num_processes: int = _field(0, "Multi-process job: number of processes (0 = detect; a job starts "
                                "jax.distributed when this is > 1, a coordinator is given, or SLURM / Open MPI "
                                "run more than one task).", group=RUN, minimum=0)
    process_id: int = _field(-1, "Multi-process job: this process's index (-1 = detect).", group=RUN, minimum=-1)
    compile_cache: str = _field("auto", "JAX's persistent compilation cache: a folder, auto (the per-user cache "
                                "folder, $XDG_CACHE_HOME/chessbrain_jax/xla or ~/.cache/chessbrain_jax/xla), or "
                                "off. A later start reuses the programs an earlier one compiled.", group=RUN)
    profile: bool = _field(False, "Write a JAX profiler trace of one episode (the second, or the only one) to "
                           "<log-dir>/<job-id>/plugins/profile/ for TensorBoard's profile tab.", group=RUN)

    # --- Self-play and search.
    selfplay_batch: int = _field(64, "Games played in parallel on the device.", group=PLAY, minimum=1)
    plies_per_episode: int = _field(32, "Moves each parallel game plays per episode.", group=PLAY, minimum=1)
    max_plies: int = _field(PGX_MAX_PLIES, "Games reaching this many plies without a result are truncated: they get "
                            "no value target.", group=PLAY, minimum=1, maximum=PGX_MAX_PLIES)
    search: str = _field("gumbel", "Search: gumbel (mctx.gumbel_muzero_policy) or puct (mctx.muzero_policy with "
                         "Dirichlet noise at the root).", group=PLAY, choices=("gumbel", "puct"))
    gumbel_considered_actions: int = _field(16, "Gumbel search: actions considered at the root.", group=PLAY,
                                            minimum=1)
    gumbel_value_scale: float = _field(0.1, "Gumbel search: c_scale in sigma(q) = (50 + most visits) x c_scale x q, "
                                       "q the move's value rescaled to [0, 1] among its siblings: how far a searched "
                                       "value can overrule the prior (0.1, mctx's default: by about 5 logits, so a "
                                       "mate in one with a prior of 0.001 loses to the favourite).", group=PLAY,
                                       minimum=0.0)
    play_searched_mates: bool = _field(False, "The search plays a mate in one it has visited at the root (a child "
                                       "that ends the game with the mover's win), and self-play's policy target for "
                                       "that position is that move: without it Gumbel's improved policy can rate a "
                                       "searched mate below a favourite with a higher prior.", group=PLAY)
    playout_cap_mate_targets: bool = _field(False, "With --play-searched-mates and playout-cap randomisation: a "
                                            "cheap search that visited a mate in one gives that move as a policy "
                                            "target too (the mate is proven at any search size).", group=PLAY)
    selfplay_starts: str = _field("", "A file of start positions, one FEN per line (# comments): the games of "
                                  "--selfplay-start-share of the self-play slots start from one drawn at random, "
                                  "e.g. won endgames to practise converting a lead (scripts/endgame_starts.py "
                                  "writes such a file).", group=PLAY)
    selfplay_start_share: float = _field(0.0, "Share of the self-play slots whose games (after their first) start "
                                         "from --selfplay-starts; the slots --selfplay-pgn-games records never do. "
                                         "0 = every game from the initial position.", group=PLAY, minimum=0.0,
                                         maximum=1.0)
    playout_cap_fraction: float = _field(1.0, "Playout-cap randomisation (KataGo): the share of self-play plies "
                                         "searched with the full --mcts-simulations, drawn per ply for the whole "
                                         "batch; the other plies use --playout-cap-simulations, play faster and "
                                         "give no policy target (their value targets stay). 1 = off.", group=PLAY,
                                         above=0.0, maximum=1.0)
    playout_cap_simulations: int = _field(0, "Playout-cap randomisation: simulations of the cheap search "
                                          "(< --mcts-simulations). 0 = a quarter of --mcts-simulations.",
                                          group=PLAY, minimum=0)
    dirichlet_alpha: float = _field(0.3, "PUCT search: Dirichlet noise concentration at the root (over legal "
                                    "moves).", group=PLAY, above=0.0)
    dirichlet_fraction: float = _field(0.25, "PUCT search: weight of the Dirichlet noise at the root.", group=PLAY,
                                       minimum=0.0, maximum=1.0)
    adjudicate_material: int = _field(0, "Games cut at --max-plies get a value target from the material on the "
                                      "board (pawn 1, knight/bishop 3, rook 5, queen 9): a win for the side ahead "
                                      "by at least N pawns, else a draw. 0 = no value target for cut games.",
                                      group=PLAY, minimum=0)
    value_discount: float = _field(1.0, "Per-ply discount of results: a position d plies before its game's end "
                                   "gets the result x discount^(d-1) as value target, and the search discounts "
                                   "values by the same factor per ply, so a quicker win is worth more (a moves-left "
                                   "signal: a winning side heads for the mate instead of shuffling). 1 = "
                                   "undiscounted results, as AlphaZero.", group=PLAY, above=0.0, maximum=1.0)
    value_drawn_ahead: float = _field(0.0, "The result a draw by the rules (fifty moves, repetition, stalemate) "
                                      "counts as, in the value targets, for a side 5 or more pawns of material "
                                      "ahead when it ends (its opponent gets the negation): -1 scores a won "
                                      "position not converted as a loss, so stalling while ahead is worth less than "
                                      "progress towards the mate. 0 = a draw, as the rules say.", group=PLAY,
                                      minimum=-1.0, maximum=1.0)
    value_material_weight: float = _field(0.0, "Mix material into the value target: (1 - w) x result + w x "
                                          "tanh(material / 3), the mover's material lead in pawns "
                                          "--value-material-plies plies later in the same game (at its last "
                                          "position, if it ended sooner). Positions without a result train towards "
                                          "the mixed-in terms alone. Teaches the value head what material is worth "
                                          "within minutes, which game results alone take far longer to. 0 = "
                                          "results only.", group=PLAY, minimum=0.0, maximum=1.0)
    value_material_plies: int = _field(4, "Plies ahead at which --value-material-weight reads the material (an "
                                       "exchange under way counts as finished).", group=PLAY, minimum=0)
    value_root_weight: float = _field(0.0, "Mix the search's root value into the value target: (1 - w) x result + "
                                      "w x root value (as Leela Chess Zero and KataGo do). Positions without a "
                                      "result (games still running) train towards the mixed-in terms alone. 0 = "
                                      "results only.", group=PLAY, minimum=0.0, maximum=1.0)
    moves_left_effect: float = _field(0.05, "With a moves-left head (--moves-left-weight): the most a leaf's value "
                                      "moves for its predicted plies left, v - sign(v) x a x min(effect, slope x "
                                      "plies), a = how far |v| lies past --moves-left-threshold (0 there, 1 at "
                                      "|v| = 1): a winning side prefers the lines that end sooner, a losing one "
                                      "those that last. 0 = the search ignores the head.", group=PLAY, minimum=0.0,
                                      maximum=1.0)
    moves_left_slope: float = _field(0.002, "Moves-left utility per predicted ply left (--moves-left-effect caps "
                                     "it).", group=PLAY, minimum=0.0)
    moves_left_threshold: float = _field(0.3, "|value| from which the moves-left utility acts (Leela Chess Zero: "
                                         "0.8 of its Q; values blended with material stay lower here).",
                                         group=PLAY, minimum=0.0, maximum=0.99)
    gumbel_sample_plies: int = _field(0, "Gumbel self-play: play the search's sampled choice (Gumbel noise on the "
                                      "improved policy) for a game's first N plies, then its best move (as players "
                                      "do), so decided games are played out without sampled slips. 0 = sample at "
                                      "every ply.", group=PLAY, minimum=0)
    temperature_plies: int = _field(30, "PUCT search: sample moves by visit count for the first N plies of a game, "
                                    "then play the most visited move.", group=PLAY, minimum=0)

    # --- Network.
    channels: int = _field(64, "Residual tower width.", group=NET, minimum=1)
    blocks: int = _field(6, "Residual blocks.", group=NET, minimum=0)
    history_steps: int = _field(8, "Positions the network reads: the current one and the N - 1 before it, of the 8 "
                                "in pgx's observation (their repetition planes with them; the 7 planes of side, "
                                "castling and counters always). Fewer make the input convolution, a third of "
                                "a 24x4 network's FLOPs at 8, that much cheaper.", group=NET, minimum=1, maximum=8)
    value_head: str = _field("scalar", "scalar: one tanh output trained by squared error; wdl: win/draw/loss "
                             "probabilities trained by cross-entropy (Leela Chess Zero), a target v read as "
                             "(max(v, 0), 1 - |v|, max(-v, 0)); the search uses W - L.", group=NET,
                             choices=("scalar", "wdl"))
    attack_planes: bool = _field(False, "Network input: 12 more planes, the squares each side's pawns, knights, "
                                 "bishops, rooks, queens and king attack in the current position, computed from "
                                 "the pieces (not stored, not learned), so the network can see attacked and "
                                 "undefended pieces.", group=NET)
    moves_left_weight: float = _field(0.0, "Moves-left head (Leela Chess Zero's MLH): a head that predicts the plies "
                                      "left until the game ends, trained on the finished games with this loss "
                                      "weight (Huber, in units of 20 plies); the search then prefers shorter wins "
                                      "and longer losses (--moves-left-effect). 0 = no head.", group=NET,
                                      minimum=0.0)

    # --- Learner and replay.
    learning_rate: float = _field(1e-3, "Peak learning rate.", group=LEARN, minimum=0.0)
    lr_schedule: str = _field("constant", "constant, or cosine decay to 0 over --lr-decay-episodes after warm-up.",
                              group=LEARN, choices=("constant", "cosine"))
    lr_decay_episodes: int = _field(0, "Cosine schedule: the episodes over which the learning rate decays to 0 "
                                    "(warm-up included). 0 = the job's --episodes when it starts. Stored with the "
                                    "job: a --resume with more --episodes keeps it, and trains at learning rate 0 "
                                    "past it.", group=LEARN, minimum=0)
    warmup_steps: int = _field(0, "Linear warm-up, in optimizer steps.", group=LEARN, minimum=0)
    optimizer: str = _field("adam", "adam; adamw (Adam with decoupled --weight-decay); or sgd with Nesterov "
                            "momentum 0.9 (AlphaZero).", group=LEARN, choices=("adam", "adamw", "sgd"))
    l2_weight: float = _field(1e-4, "L2 penalty lambda on all weights (kernels), added to the loss.", group=LEARN,
                              minimum=0.0)
    weight_decay: float = _field(0.0, "--optimizer adamw: decoupled weight decay on kernels (not biases or "
                                 "normalisation scales), each step's kernels shrink by learning rate x this. Unlike "
                                 "--l2-weight under Adam, it is not rescaled by Adam's second moments.", group=LEARN,
                                 minimum=0.0)
    grad_clip: float = _field(1.0, "Clip gradients to this global norm (0 disables).", group=LEARN, minimum=0.0)
    sample_reuse: float = _field(1.0, "Training samples drawn per generated position.", group=LEARN,
                                 above=0.0)
    replay_capacity: int = _field(65536, "Replay buffer size in positions.", group=LEARN, minimum=1)
    train_loop: str = _field("auto", "How an episode's micro-batches run: scan (one jitted lax.scan), host (one "
                             "jitted step each, dispatched without waiting), auto = host on CPU, scan elsewhere.",
                             group=LEARN, choices=("auto", "scan", "host"))

    # --- Evaluation during training.
    eval_interval: int = _field(0, "Every N episodes, play an arena match against --eval-opponent; results go to "
                                "metrics (eval/score, eval/elo, ...) and <job>/eval/step<N>.pgn. 0 = never.",
                                group=EVAL, minimum=0)
    eval_games: int = _field(10, "Games per evaluation match (colours alternate).", group=EVAL, minimum=1)
    eval_opponent: str = _field("random", "Evaluation opponent, as the arena names players: random, "
                                "stockfish[,skill=0,nodes=1000], a checkpoint folder, job:<id>, untrained.",
                                group=EVAL)
    eval_simulations: int = _field(-1, "Search simulations of the learner in evaluation games; 0 = raw policy, "
                                   "-1 = --mcts-simulations.", group=EVAL, minimum=-1)
    probe_interval: int = _field(0, "Every N episodes, the raw network on the probe set of Stockfish-labelled "
                                 "positions (play/diagnostics.py): probe/top1, probe/top3 (agreement with "
                                 "Stockfish's move), probe/top1_capture (top1 where that move captures), "
                                 "probe/value_mse, probe/value_corr, probe/value_sign. 0 = never.",
                                 group=EVAL, minimum=0)
    selfplay_pgn_games: int = _field(0, "Record the games of the first N parallel self-play slots, as they finish, "
                                     "to <job>/selfplay.pgn.", group=EVAL, minimum=0)

    # ------------------------------------------------------------------ derived quantities
    @property
    def positions_per_episode(self) -> int:
        return self.selfplay_batch * self.plies_per_episode

    @property
    def cheap_simulations(self) -> int:
        """The cheap search's simulations under playout-cap randomisation (`playout_cap_fraction < 1`)."""
        return self.playout_cap_simulations or max(1, self.mcts_simulations // 4)

    @property
    def micro_steps_per_episode(self) -> int:
        """Micro-batches trained per episode: sample_reuse x positions / batch, rounded up to whole optimizer steps."""
        micro = math.ceil(self.sample_reuse * self.positions_per_episode / self.batch_size)
        return math.ceil(micro / self.grad_accum_steps) * self.grad_accum_steps

    @property
    def optimizer_steps_per_episode(self) -> int:
        return self.micro_steps_per_episode // self.grad_accum_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_TYPES = {f.name: Config.__annotations__[f.name] for f in dataclasses.fields(Config)}


def flag_name(name: str) -> str:
    return FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _coerce(name: str, raw: Any, where: str) -> Any:
    """Converts `raw` (a string from a flag/env, or a YAML scalar) to the field's type; names `where` on error."""
    kind = _TYPES[name]
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where} must be a boolean (true/false/1/0), got {raw!r}")
    if kind == "int":
        if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
            raise ConfigError(f"{where} must be an integer, got {raw!r}")
        try:
            return int(raw.strip(), 10) if isinstance(raw, str) else int(raw)
        except (TypeError, ValueError):
            pass
        try:  # "1e3" from a flag, environment variable or YAML (which reads 1e3 as a string)
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {raw!r}")
    if kind == "float":
        if isinstance(raw, bool):
            raise ConfigError(f"{where} must be a number, got {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {raw!r}")
        return value
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise ConfigError(f"{where} must be a string, got {raw!r}")
    return str(raw)


def _check_range(name: str, value: Any, where: str) -> None:
    meta = FIELDS[name].metadata
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{where} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        bound = "a positive integer" if meta["minimum"] == 1 and _TYPES[name] == "int" else f">= {meta['minimum']}"
        raise ConfigError(f"{where} must be {bound}; got {value!r}")
    if meta["above"] is not None and value <= meta["above"]:
        raise ConfigError(f"{where} must be > {meta['above']}; got {value!r}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise ConfigError(f"{where} must be <= {meta['maximum']}; got {value!r}")


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, expected a YAML file") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(FIELDS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        raise ConfigError(message)


def build_parser(prog: str = "python -m chessbrain_jax.train") -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=prog,
        description="Train a chess network by self-play (pgx + mctx + Flax). Settings come from defaults < "
        "--config YAML < CHESSBRAIN_* environment variables < flags.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file whose keys are the field names below "
                        "(e.g. batch_size: 32).")
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks on errors.")
    parser.add_argument("--resume", action="store_true", help="Continue job --job-id from its latest good "
                        "checkpoint (exactly: network, optimizer, RNG, games in progress, replay buffer). Only run "
                        "controls (e.g. --episodes, --checkpoint-interval, --device) may differ from the job's "
                        "settings. Without checkpoints, the job starts fresh.")
    parser.add_argument("--overwrite", action="store_true", help="Start job --job-id again, deleting its metrics "
                        "folder and checkpoints.")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, field in FIELDS.items():
        meta = field.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        default_text = field.default if field.default != "" else "see help"
        help_text = f"{meta['help']} [default: {default_text}; env {env_name(name)}]"
        if _TYPES[name] == "bool":
            group.add_argument(flag_name(name), dest=name, action="store_true", help=help_text)
        else:
            group.add_argument(flag_name(name), dest=name, metavar=name.upper(), help=help_text)
    return parser


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> tuple[Config, dict]:
    """Merges defaults < YAML < environment < flags into a validated `Config`.

    Returns the config and the run options that are not settings (`debug`, `resume`, `overwrite`, `config_file`,
    and `explicit`: the names set by YAML, environment or flags). Raises `ConfigError` with a one-line message.
    """
    environ = os.environ if environ is None else environ
    parser = build_parser()
    namespace = vars(parser.parse_args(list(sys.argv[1:] if argv is None else argv)))
    extras = {"debug": bool(namespace.pop("debug", False)), "config_file": namespace.pop("config", None),
              "resume": bool(namespace.pop("resume", False)), "overwrite": bool(namespace.pop("overwrite", False))}

    values: dict[str, Any] = {}
    where: dict[str, str] = {}

    def put(name: str, raw: Any, source: str) -> None:
        value = _coerce(name, raw, source)
        _check_range(name, value, source)
        values[name], where[name] = value, source

    if extras["config_file"]:
        path = extras["config_file"]
        for key, raw in _read_yaml(path).items():
            if key not in FIELDS:
                raise ConfigError(f"config file {path}: unknown key {key!r}{_suggest(str(key))}")
            put(key, raw, f"config file {path}: {key}")
    if environ.get("TENSORBOARD_LOG_DIR"):
        put("log_dir", environ["TENSORBOARD_LOG_DIR"], "environment variable TENSORBOARD_LOG_DIR")
    for variable, raw in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable[len(ENV_PREFIX):].lower()
        if name not in FIELDS:
            raise ConfigError(f"environment variable {variable} is not a setting{_suggest(name)}")
        put(name, raw, f"environment variable {variable}")
    for name, raw in namespace.items():
        put(name, raw, flag_name(name))

    if not values.get("job_id"):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        values["job_id"] = f"{stamp}-{os.getpid()}"  # two runs started in the same second get different ids
    if not values.get("log_dir"):
        values["log_dir"] = "./runs"
    if any(sep in values["job_id"] for sep in ("/", "\\")) or values["job_id"] in (".", ".."):
        raise ConfigError(f"{where.get('job_id', '--job-id')} must be a plain name without path separators; "
                          f"got {values['job_id']!r}")
    if extras["resume"] and extras["overwrite"]:
        raise ConfigError("--resume and --overwrite exclude each other")
    extras["explicit"] = set(where)
    config = Config(**values)
    if config.batch_size > config.replay_capacity:
        raise ConfigError(f"--batch-size ({config.batch_size}) must not exceed --replay-capacity "
                          f"({config.replay_capacity})")
    if config.playout_cap_fraction < 1 and config.cheap_simulations >= config.mcts_simulations:
        raise ConfigError(f"--playout-cap-simulations ({config.cheap_simulations}) must be below "
                          f"--mcts-simulations ({config.mcts_simulations}) with --playout-cap-fraction < 1")
    if config.weight_decay > 0 and config.optimizer != "adamw":
        raise ConfigError(f"--weight-decay ({config.weight_decay}) needs --optimizer adamw; got --optimizer "
                          f"{config.optimizer} (use --l2-weight there)")
    if config.value_material_weight + config.value_root_weight > 1.0:
        raise ConfigError(f"--value-material-weight ({config.value_material_weight}) and --value-root-weight "
                          f"({config.value_root_weight}) must add up to at most 1")
    if config.selfplay_start_share > 0 and not config.selfplay_starts:
        raise ConfigError(f"--selfplay-start-share ({config.selfplay_start_share}) needs --selfplay-starts FILE")
    if config.search == "gumbel" and config.gumbel_considered_actions < 2:
        raise ConfigError("--gumbel-considered-actions must be >= 2 with --search gumbel")
    if config.playout_cap_mate_targets and not config.play_searched_mates:
        raise ConfigError("--playout-cap-mate-targets needs --play-searched-mates (it marks the mates that rule plays)")
    return config, extras


def resolve_precision(config: Config, platform: str) -> tuple[str, str]:
    """Returns (dtype name, reason) for the network's compute dtype on `platform` ('cpu', 'gpu', 'tpu')."""
    if config.no_amp:
        return "float32", "--no-amp given"
    if config.precision != "auto":
        return config.precision, f"--precision {config.precision}"
    if platform == "cpu":
        return "float32", "on CPU, XLA runs bfloat16 convolutions slower than float32, so mixed precision is off"
    return "bfloat16", f"mixed precision on {platform}: bfloat16 compute, float32 master weights"
