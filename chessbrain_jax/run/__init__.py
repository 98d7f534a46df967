"""The run: a training job's lifecycle and all its I/O, between compiled chunks (`orchestrator.run` is the entry)."""
