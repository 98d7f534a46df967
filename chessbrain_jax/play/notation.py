"""Conversion between pgx chess actions/states and python-chess moves/boards (hence UCI, SAN, FEN and PGN).

`move_to_action`/`action_to_move` convert single moves; `board_to_state` builds the pgx state of a python-chess
game (history included) and `state_to_fen` reads a pgx state back as FEN.

pgx encodes a move as `from_square * 73 + plane` (AlphaZero's 73 move planes) with squares indexed `file * 8 + rank`
from the point of view of the side to move: for black the board is mirrored top to bottom. Planes 0-8 are the
under-promotions (rook, bishop, knight x straight, capture towards the h-file, capture towards the a-file); a pawn
reaching the last rank by a queen-like plane promotes to a queen.
"""

from __future__ import annotations

import functools

import chess
import jax
import jax.numpy as jnp
import numpy as np
from pgx._src.games.chess import FROM_PLANE, TO_PLANE
from pgx.experimental.chess import to_fen as _pgx_to_fen

from chessbrain_jax.config import ConfigError
from chessbrain_jax.core import chess_env, starts
from chessbrain_jax.core.types import MOVE_PLANES

_FROM_PLANE = np.asarray(FROM_PLANE)  # [64 from, 73 planes] -> pgx to-square (-1 off board)
_TO_PLANE = np.asarray(TO_PLANE)  # [64 from, 64 to] -> plane of the queen/knight move (-1 if none)
_UNDERPROMOTIONS = (chess.ROOK, chess.BISHOP, chess.KNIGHT)
_UNDERPROMOTION_DIRECTION = {0: 0, 1: 1, -1: 2}  # file change -> plane % 3


def _to_real_square(pgx_square: int, white_to_move: bool) -> chess.Square:
    file, rank = divmod(int(pgx_square), 8)
    return chess.square(file, rank if white_to_move else 7 - rank)


def _to_pgx_square(square: chess.Square, white_to_move: bool) -> int:
    rank = chess.square_rank(square)
    return chess.square_file(square) * 8 + (rank if white_to_move else 7 - rank)


def action_to_move(board: chess.Board, action: int) -> chess.Move:
    """The python-chess move for pgx `action` in `board` (the board tells the side to move and which piece moves)."""
    if not 0 <= int(action) < 64 * MOVE_PLANES:
        raise ValueError(f"pgx chess action must be in [0, {64 * MOVE_PLANES}), got {action}")
    from_pgx, plane = divmod(int(action), MOVE_PLANES)
    to_pgx = _FROM_PLANE[from_pgx, plane]
    if to_pgx < 0:
        raise ValueError(f"pgx chess action {action} leaves the board")
    white = board.turn == chess.WHITE
    from_square, to_square = _to_real_square(from_pgx, white), _to_real_square(to_pgx, white)
    promotion = None
    if plane < 9:
        promotion = _UNDERPROMOTIONS[plane // 3]
    elif board.piece_type_at(from_square) == chess.PAWN and chess.square_rank(to_square) in (0, 7):
        promotion = chess.QUEEN
    return chess.Move(from_square, to_square, promotion=promotion)


def move_to_action(board: chess.Board, move: chess.Move) -> int:
    """The pgx action for python-chess `move` in `board` (standard castling e1g1/e1c1, not chess960 notation)."""
    white = board.turn == chess.WHITE
    from_pgx = _to_pgx_square(move.from_square, white)
    to_pgx = _to_pgx_square(move.to_square, white)
    if move.promotion in _UNDERPROMOTIONS:
        file_change = chess.square_file(move.to_square) - chess.square_file(move.from_square)
        plane = _UNDERPROMOTIONS.index(move.promotion) * 3 + _UNDERPROMOTION_DIRECTION[file_change]
    else:
        plane = int(_TO_PLANE[from_pgx, to_pgx])
        if plane < 0:
            raise ValueError(f"move {move.uci()} has no pgx encoding")
    return from_pgx * MOVE_PLANES + plane


def line_to_moves(board: chess.Board, actions) -> list[chess.Move]:
    """The legal prefix of a line of pgx actions played from `board`: it ends at a -1 pad, an action that leaves the
    board or is illegal (PUCT may try one below the root; pgx scores it as a loss), or the end of the game."""
    board, moves = board.copy(stack=False), []
    for action in actions:
        if action < 0 or board.is_game_over():
            break
        try:
            move = action_to_move(board, int(action))
        except ValueError:
            break
        if move not in board.legal_moves:
            break
        moves.append(move)
        board.push(move)
    return moves


def legal_actions(board: chess.Board) -> set[int]:
    """python-chess's legal moves of `board` as pgx actions."""
    return {move_to_action(board, move) for move in board.legal_moves}


_step_one = jax.jit(chess_env.ENV.step)


def position_problems(board: chess.Board) -> str:
    """Why python-chess finds `board` illegal ("no white king, opposite check"), or "" for a legal position."""
    status = board.status()
    return ", ".join(flag.name.lower().replace("_", " ") for flag in chess.Status if flag and flag & status)


def from_fen(fen: str) -> chess_env.State:
    """One unbatched pgx state from a FEN string.

    python-chess checks it first (pgx's parser does not): a malformed FEN or an impossible position (missing king,
    side not to move in check, pawns on the back rank, ...) raises ValueError with a one-line reason. The parsing
    follows `pgx.experimental.chess.from_fen`, but the state is built in one jitted call
    (`chess_env.state_from_arrays`) and the history before the root is empty, as after `ENV.init`.
    """
    try:
        board = chess.Board(fen)
    except ValueError as error:
        raise ValueError(f"invalid FEN {fen!r}: {error}") from None
    problems = position_problems(board)
    if problems:
        raise ValueError(f"FEN {fen!r} is not a legal position: {problems}")
    return chess_env.state_from_arrays(*board_arrays(board))


def read_positions(path: str, what: str = "positions file") -> list[chess.Board]:
    """The positions of a file of FEN or EPD lines (blank lines and `#` comments skipped). ValueError naming the
    file and line of the first one that does not parse, is illegal or is already over (`what` names the file's
    role in the other messages)."""
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {what} {path}: {getattr(error, 'strerror', None) or error}") from None
    boards = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        board = chess.Board(None)
        try:
            if len(line.split()) >= 6 and line.split()[4].isdigit():
                board.set_fen(line)
            else:
                board.set_epd(line)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: not a FEN or EPD position ({error})") from None
        problems = position_problems(board)
        if problems:
            raise ValueError(f"{path}:{number}: not a legal position ({problems})")
        if board.is_game_over(claim_draw=True):
            raise ValueError(f"{path}:{number}: the game is already over in this position")
        boards.append(board)
    if not boards:
        raise ValueError(f"{what} {path} has no positions")
    return boards


@functools.lru_cache(maxsize=4)
def read_start_pool(path: str) -> starts.StartPool:
    """The `--selfplay-starts` pool in the FEN/EPD file `path`, read once per process (every device's self-play and
    the producers share it); ConfigError naming the line of a bad position."""
    try:
        boards = read_positions(path, "file")
    except ValueError as error:
        raise ConfigError(f"--selfplay-starts: {error}") from None
    return starts.stack([board_arrays(board) for board in boards])


def board_arrays(board: chess.Board) -> tuple[np.ndarray, ...]:
    """The arguments of `chess_env.state_from_arrays` for a legal python-chess position: board `i32[64]` from the
    mover's side, colour, `bool[2, 2]` castling rights, en passant square, halfmove and fullmove counters."""
    white = board.turn == chess.WHITE
    pieces = np.zeros((8, 8), np.int32)  # [rank from 8 down to 1, file], white positive
    for square, piece in board.piece_map().items():
        pieces[7 - chess.square_rank(square), chess.square_file(square)] = piece.piece_type * (1 if piece.color else -1)
    castling = np.array([[board.has_queenside_castling_rights(chess.WHITE),
                          board.has_kingside_castling_rights(chess.WHITE)],
                         [board.has_queenside_castling_rights(chess.BLACK),
                          board.has_kingside_castling_rights(chess.BLACK)]])
    en_passant = -1
    if board.ep_square is not None:  # python-chess keeps it only when a capture is possible; pgx's rules agree
        file, rank = chess.square_file(board.ep_square), chess.square_rank(board.ep_square)
        en_passant = file * 8 + (rank if white else 7 - rank)
    if not white:
        pieces, castling = -pieces[::-1], castling[::-1]
    return (np.rot90(pieces, k=3).reshape(-1).copy(), np.int32(0 if white else 1), castling.copy(),
            np.int32(en_passant), np.int32(board.halfmove_clock), np.int32(board.fullmove_number))


def board_to_state(board: chess.Board) -> chess_env.State:
    """The unbatched pgx state of `board`, history included: its root position (FEN) is stepped through the board's
    move stack, so repetition counts and the network's history planes match the game that was played."""
    start = board.root()
    state = from_fen(start.fen())
    for move in board.move_stack:
        state = _step_one(state, jnp.int32(move_to_action(start, move)))
        start.push(move)
    return state


def state_to_fen(state: chess_env.State) -> str:
    """FEN of an unbatched pgx state. pgx records an en passant square after every double pawn push, as
    python-chess's `board.fen(en_passant="fen")` does; the move counters are pgx's."""
    return _pgx_to_fen(state)


def stack_states(states: list[chess_env.State]) -> chess_env.State:
    """`[B]` batch of unbatched pgx states."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
