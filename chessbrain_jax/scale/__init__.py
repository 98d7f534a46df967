"""Scale-out: data parallel over a device mesh (`sharding`), producer/consumer self-play (`producers`) and
multi-process jobs (`distributed`). Builds on the hot path; knows nothing of storage, play or the run."""
