"""Play and judge: notation (pgx <-> python-chess), players, matches with Elo (`arena`), evaluation during training
and the UCI engine (`uci`)."""
