"""Arena: Elo arithmetic, batched matches replayed through python-chess, PGN and JSON outputs, Stockfish."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import chess
import chess.pgn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chessbrain_jax import arena as arena_cli
from chessbrain_jax.play import arena, notation, player
from tests.conftest import make_config


@pytest.mark.parametrize("wins, draws, losses", [(5, 3, 2), (3, 4, 3), (2, 3, 5), (30, 50, 20)])
def test_score_and_elo_follow_the_logistic_formula(wins, draws, losses):
    n = wins + draws + losses
    score = (wins + draws / 2) / n
    result = arena.score_match(wins, draws, losses)
    assert result.score == pytest.approx(score)
    assert result.elo == pytest.approx(-400 * math.log10(1 / score - 1))
    deviation = math.sqrt((wins * (1 - score) ** 2 + draws * (0.5 - score) ** 2 + losses * score ** 2) / n)
    low, high = score - 1.959964 * deviation / math.sqrt(n), score + 1.959964 * deviation / math.sqrt(n)
    assert result.elo_low == pytest.approx(-400 * math.log10(1 / low - 1))
    assert result.elo_high == pytest.approx(-400 * math.log10(1 / high - 1))
    assert result.elo_low < result.elo < result.elo_high


def test_elo_known_values_and_limits():
    assert arena.elo_difference(0.5) == 0.0 and str(arena.elo_difference(0.5)) == "0.0"
    assert arena.elo_difference(0.75) == pytest.approx(190.8485, abs=1e-3)
    assert arena.elo_difference(0.25) == pytest.approx(-190.8485, abs=1e-3)
    assert arena.elo_difference(1.0) == math.inf and arena.elo_difference(0.0) == -math.inf
    assert arena.score_match(9, 0, 1).elo_high == math.inf  # the score interval reaches 1
    perfect = arena.score_match(5, 0, 0)
    assert perfect.score == 1.0 and perfect.elo == math.inf and arena.format_elo(perfect) == "+inf [+inf, +inf]"


def _check_games(games, a_name, b_name):
    """Every game replays legally from its root, colours alternate per pair, and the recorded result is the board's."""
    for index, game in enumerate(games):
        board = game.board.root()
        for move in game.board.move_stack:
            assert move in board.legal_moves
            board.push(move)
        a_moves_first = index % 2 == 0
        assert game.a_is_white == (a_moves_first == (game.board.root().turn == chess.WHITE))
        assert (game.white, game.black) == ((a_name, b_name) if game.a_is_white else (b_name, a_name))
        if game.reason == "checkmate":
            assert board.is_checkmate() and game.result == (0.0 if board.turn == chess.WHITE else 1.0)
        else:
            assert game.result == 0.5


@pytest.fixture(scope="module")
def tiny_player():
    return player.untrained_player(make_config(), simulations=4)


def test_network_against_random_match(tiny_player):
    random_player = player.RandomPlayer()
    games = arena.play_match(tiny_player, random_player, games=6, opening_plies=2, max_plies=60, seed=1)
    assert len(games) == 6
    _check_games(games, tiny_player.description, "random")
    for pair in range(3):  # both games of a pair start from the same opening
        assert games[2 * pair].board.move_stack[:2] == games[2 * pair + 1].board.move_stack[:2]
    summary = arena.summarise(games)
    assert summary["wins"] + summary["draws"] + summary["losses"] == 6
    assert summary["as_white"]["games"] == summary["as_black"]["games"] == 3
    assert sum(summary["terminations"].values()) == 6
    points = sum(g.result if g.a_is_white else 1 - g.result for g in games)
    assert summary["score"] == pytest.approx(points / 6)


class Scripted:
    """A host-side player that plays given moves (the arena's path for engines such as Stockfish)."""

    is_host, name = True, "scripted"

    def __init__(self, *ucis):
        self.moves = [chess.Move.from_uci(uci) for uci in ucis]

    def move(self, board):
        return self.moves.pop(0)


def test_checkmate_by_a_host_player_is_scored(tiny_player):
    """A host player mates in one as black after the network's move; the game is 0-1 by checkmate, and black to
    move in the opening means A (moving first) is black."""
    board = chess.Board("r5k1/8/8/8/8/8/5PPP/6K1 b - - 0 1")
    games = arena.play_match(Scripted("a8a1"), tiny_player, games=1, openings=[board], max_plies=4)
    assert games[0].board.move_stack == [chess.Move.from_uci("a8a1")]
    assert (games[0].result, games[0].reason, games[0].a_is_white) == (0.0, "checkmate", False)
    assert arena.summarise(games)["wins"] == 1


def test_cli_writes_pgn_and_json(tmp_path):
    openings = tmp_path / "openings.epd"
    openings.write_text("# two openings, one with black to move\n"
                        "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq -\n"
                        "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3\n")
    out = tmp_path / "match"
    code = arena_cli.main(["random", "random", "--games", "4", "--openings", str(openings), "--opening-plies", "0",
                       "--max-plies", "30", "--out", str(out), "--seed", "3"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["games"] == 4 and result["wins"] + result["draws"] + result["losses"] == 4
    with open(out / "games.pgn") as stream:
        parsed = []
        while (game := chess.pgn.read_game(stream)) is not None:
            parsed.append(game)
    assert len(parsed) == 4
    for number, game in enumerate(parsed):
        assert not game.errors
        board = game.board()
        assert board.fen().startswith(["rnbqkbnr/pppppppp/8/8/4P3", "r1bqkbnr/pppp1ppp/2n5"][number // 2])
        for move in game.mainline_moves():
            assert move in board.legal_moves
            board.push(move)
        expected = {"1-0": 1.0, "0-1": 0.0, "1/2-1/2": 0.5}[game.headers["Result"]]
        if game.headers["TerminationDetail"] == "checkmate":
            assert board.is_checkmate() and expected == (0.0 if board.turn == chess.WHITE else 1.0)
        else:
            assert expected == 0.5 and len(list(game.mainline_moves())) == 30
    # black to move in opening 1: A moves first there, so A is black in game 1 and white in game 2
    assert (parsed[0].headers["Black"], parsed[1].headers["White"]) == ("random", "random")


@pytest.mark.parametrize("argv, fragment", [
    (["random", "nowhere/run_step5"], "does not exist"),
    (["random", "job:missing"], "no checkpoints of job 'missing'"),
    (["random", "random,speed=3"], "unknown option(s) speed"),
    (["random", "stockfish,skill=high"], "skill must be an integer"),
    (["random", "random", "--games", "0"], "--games must be >= 1"),
    (["random", "random", "--openings", "/nonexistent.epd"], "cannot read openings file"),
    (["random"], "the following arguments are required: player_b"),
])
def test_cli_bad_input_is_one_line(tmp_path, argv, fragment):
    result = subprocess.run([sys.executable, "-m", "chessbrain_jax.arena", *argv, "--checkpoint-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin:/usr/games", "JAX_PLATFORMS": "cpu",
                                 "CHESSBRAIN_COMPILE_CACHE": "off"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m chessbrain_jax.arena: error: "), result.stderr
    assert fragment in lines[0]


def test_bad_openings_line(tmp_path):
    path = tmp_path / "bad.epd"
    path.write_text("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq -\nnot a position\n")
    with pytest.raises(arena.ArenaError, match=r"bad.epd:2: not a FEN or EPD position"):
        arena.read_openings(str(path))


STOCKFISH = shutil.which("stockfish") or shutil.which("stockfish", path="/usr/games")


@pytest.mark.skipif(STOCKFISH is None, reason="no stockfish binary (apt-get install stockfish)")
def test_stockfish_beats_random():
    stockfish = arena.parse_player("stockfish,skill=20,nodes=200")
    try:
        games = arena.play_match(stockfish, player.RandomPlayer(), games=2, opening_plies=0, max_plies=200)
    finally:
        stockfish.close()
    _check_games(games, stockfish.description, "random")
    assert [g.reason for g in games] == ["checkmate", "checkmate"]
    assert arena.summarise(games)["wins"] == 2


def test_considered_option_limits_the_root_moves_gumbel_searches():
    narrow = arena.parse_player("untrained,channels=8,blocks=1,sims=8,considered=2")
    assert narrow.config.gumbel_considered_actions == 2 and "8 simulations, 2 considered" in narrow.description
    visited = [move for move, count in narrow.analyse(chess.Board()).visits.items() if count > 0]
    assert len(visited) == 2
    wide = arena.parse_player("untrained,channels=8,blocks=1,sims=8")
    assert len([move for move, count in wide.analyse(chess.Board()).visits.items() if count > 0]) == 8
    with pytest.raises(arena.ArenaError, match="considered must be >= 2"):
        arena.parse_player("untrained,considered=1")


def test_cscale_option_sets_gumbels_value_scale():
    sharp = arena.parse_player("untrained,channels=8,blocks=1,sims=8,cscale=1.5")
    assert sharp.config.gumbel_value_scale == 1.5 and "c_scale 1.5" in sharp.description
    assert arena.parse_player("untrained,channels=8,blocks=1,sims=8").config.gumbel_value_scale == 0.1
    for bad, reason in (("x", "cscale must be a number"), ("-1", "cscale must be >= 0")):
        with pytest.raises(arena.ArenaError, match=reason):
            arena.parse_player(f"untrained,cscale={bad}")


def test_mates_option_sets_play_searched_mates():
    plays = arena.parse_player("untrained,channels=8,blocks=1,sims=8,mates=1")
    assert plays.config.play_searched_mates and "plays searched mates" in plays.description
    assert not arena.parse_player("untrained,channels=8,blocks=1,sims=8,mates=false").config.play_searched_mates
    with pytest.raises(arena.ArenaError, match="mates must be 1 or 0, got 'yes'"):
        arena.parse_player("untrained,mates=yes")


def test_mleffect_option_sets_the_moves_left_effect():
    from chessbrain_jax.config import load_config
    from chessbrain_jax.play import player

    assert arena.parse_player("untrained,channels=8,blocks=1,sims=8,mleffect=0.02").config.moves_left_effect == 0.02
    config = load_config(["--channels", "8", "--blocks", "1", "--moves-left-weight", "0.1"], environ={})[0]
    assert "moves-left effect 0.05" in player.untrained_player(config, 8).description
    assert "moves-left effect 0" in player.untrained_player(config, 8, moves_left_effect=0.0).description
    for bad, reason in (("x", "mleffect must be a number"), ("2", "moves-left effect must be in")):
        with pytest.raises(arena.ArenaError, match=reason):
            arena.parse_player(f"untrained,mleffect={bad}")


def test_trees_option_sums_independent_trees_per_position():
    import jax

    from chessbrain_jax.play import notation

    fens = [chess.STARTING_FEN, "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "8/P6k/8/8/8/8/6K1/8 w - - 0 1"]
    states = jax.tree.map(lambda *leaves: jax.numpy.stack(leaves), *[notation.from_fen(fen) for fen in fens])
    one = arena.parse_player("untrained,channels=8,blocks=1,sims=8,search=puct")
    three = arena.parse_player("untrained,channels=8,blocks=1,sims=8,search=puct,trees=3")
    assert "8 simulations x 3 trees" in three.description and three.trees == 3
    key = jax.random.PRNGKey(0)
    # PUCT without noise builds the same tree thrice: the summed visits pick a move one tree visits most, per position
    weights = jax.jit(one._search)(one.params, key, states).action_weights
    chosen = three.actions(key, states)
    assert (weights[jax.numpy.arange(3), chosen] == weights.max(axis=-1)).all()
    for fen, action in zip(fens, chosen.tolist()):
        assert action in notation.legal_actions(chess.Board(fen))
    with pytest.raises(arena.ArenaError, match="trees must be >= 1"):
        arena.parse_player("untrained,trees=0")


@pytest.mark.parametrize("live, games, batch", [(1, 8, 1), (2, 8, 2), (3, 8, 4), (5, 8, 8), (5, 6, 6), (16, 25, 16),
                                                (17, 25, 25), (25, 25, 25)])
def test_search_batch_is_a_power_of_two_or_all_games(live, games, batch):
    assert arena.search_batch(live, games) == batch


class FirstLegal:
    """A device player that plays each game's first legal action and records the batch sizes it searches."""

    def __init__(self):
        self.batches = []

    def actions(self, key, states):
        self.batches.append(states.legal_action_mask.shape[0])
        return jnp.argmax(states.legal_action_mask, axis=-1)


def test_device_players_search_only_live_games():
    """Of 8 games, A moves in the even ones (live: 0, 6) and B in the odd ones (live: 7): A searches a batch of 2,
    B of 1, each live game gets its own first legal move and finished games get 0."""
    fens = [chess.STARTING_FEN, "4k3/8/8/8/8/8/8/R3K3 w - - 0 1", "4k3/8/8/8/8/8/3P4/4K3 w - - 0 1",
            "r3k3/8/8/8/8/8/8/4K3 b - - 0 1"]
    boards = [chess.Board(fens[i % 4]) for i in range(8)]
    states = notation.stack_states([notation.board_to_state(board) for board in boards])
    done = np.array([False, True, True, True, True, True, False, False])
    a, b = FirstLegal(), FirstLegal()
    actions, _ = arena._choose_actions((a, b), states, boards, done, jax.random.PRNGKey(0))
    assert (a.batches, b.batches) == ([2], [1])
    first_legal = np.argmax(np.asarray(states.legal_action_mask), axis=-1)
    assert list(actions[~done]) == list(first_legal[~done]) and not actions[done].any()
    assert len(set(first_legal[[0, 6, 7]])) == 3  # the check means something: the three boards' moves differ
