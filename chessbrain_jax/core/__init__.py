"""The hot path: pure, jittable functions over explicit pytrees (rules, encoding, network, search, self-play, value
targets, replay, learner). Nothing here does I/O or imports storage, scale, play or the run."""
