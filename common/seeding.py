"""Seeds derived from a run's seed and a position, so that random streams are functions of where a run is.

Used for the data stream (:mod:`common.data.sampler`: a seed per sample) and for the process's global
generators at every iteration (:class:`common.handlers.IterationSeed`): a resumed run, on one process
or many, draws what the uninterrupted run drew, with nothing about the generators in its checkpoints.
"""

from __future__ import annotations


def mix_seed(*values: int) -> int:
    """A 32-bit seed from several integers (NumPy's ``SeedSequence``: well spread, the same on every platform)."""
    import numpy as np

    return int(np.random.SeedSequence([int(v) % 2**63 for v in values]).generate_state(1)[0])
