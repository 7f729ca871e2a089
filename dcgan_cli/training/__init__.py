"""Training (paper, section 4): the config, the step, the loop, checkpoints, reporters, the quality signal, data parallelism."""
