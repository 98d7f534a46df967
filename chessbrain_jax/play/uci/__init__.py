"""The UCI engine over a `NetworkPlayer`; its command line is `chessbrain_jax.uci`, its user manual docs/uci.md.

    protocol   the session: commands in, `id`/`option`/`info`/`bestmove` lines out (`UciEngine`, `Output`)
    search     one `go`: how many chunks to run, and the move their trees' summed statistics choose (`GoSearch`)
    chunks     the compiled search chunk of each option setting, and the cached pgx root states it searches
    clock      the limits of a `go`: its arguments, the time budget, stop and ponderhit (`parse_go`, `SearchControl`)
"""
