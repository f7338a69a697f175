"""Engine pieces plugged into MONAI's ``SupervisedTrainer`` (no hand-written training loops)."""

from common.engines.masked_batch import MaskedImageBatch
from common.engines.schedule import epochs_for_steps

__all__ = ["MaskedImageBatch", "epochs_for_steps"]
