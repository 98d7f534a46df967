"""What a job leaves on disk: Orbax checkpoints (`checkpoint`) and metrics (`metrics`: JSONL, TensorBoard,
progress). Called by the orchestrator between compiled chunks, never from inside jit."""
