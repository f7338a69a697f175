"""Step-based training on Ignite's epoch-based engines."""

from __future__ import annotations


def epochs_for_steps(num_steps: int, epoch_length: int) -> int:
    """Number of epochs of ``epoch_length`` iterations that make exactly ``num_steps`` steps.

    Papers state optimisation in steps (SubFore: 1600); Ignite counts epochs. An "epoch" here is a
    fixed number of iterations (Ignite restarts the data loader when it runs out), so checkpoints and
    logs happen every ``epoch_length`` steps whatever the dataset size.
    """
    if num_steps < 1 or epoch_length < 1:
        raise ValueError(f"num_steps ({num_steps}) and epoch_length ({epoch_length}) must be >= 1")
    if num_steps % epoch_length:
        raise ValueError(
            f"num_steps ({num_steps}) must be a multiple of epoch_length ({epoch_length}); "
            f"e.g. set epoch_length to a divisor of {num_steps}"
        )
    return num_steps // epoch_length
