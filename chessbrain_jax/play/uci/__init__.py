"""The UCI engine (`engine`); the command line that starts it is `chessbrain_jax.uci`."""
