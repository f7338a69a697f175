"""Shared Python for the ssl3d MONAI bundle collection.

Bundles are configuration only; everything they instantiate beyond MONAI lives here, one concept
per module:

- :mod:`common.data`: embedded synthetic CT, CT-triage and brain-tumour MRI phantoms, datalist
  resolution and validation, the datalist CLI, seeded training subsets, an error-propagating thread loader.
- :mod:`common.transforms`: transforms MONAI lacks (loading with file-naming errors, case checks,
  BraTS region conversion in either numbering, atomic label-map saving, CT-FM's intra-sample views,
  CT window channels).
- :mod:`common.masking`: masking strategies (SubFore subvolume foreground, MedContext tube, AnatoMask
  teacher-ranked masks).
- :mod:`common.losses`: losses (masked reconstruction, MedContext context, AnatoMask patch MSE, NT-Xent).
- :mod:`common.engines`: pieces for MONAI's ``SupervisedTrainer`` (batch preparation, EMA teachers).
- :mod:`common.retrieval`: CT-FM scan embeddings, the embedding index, top-k cosine queries and its CLI.
- :mod:`common.handlers`: atomic checkpoints/resume, best-model saving, per-case/per-class metric
  reports, weight export, TensorBoard output.
- :mod:`common.networks`: encoder definitions for exporting, loading pretrained weights with a report,
  the methods' model wrappers (MedContext, AnatoMask, CT-FM).
- :mod:`common.experiments`: drivers over bundles (label-efficiency sweeps).
- :mod:`common.io`: atomic file writes (checkpoints, weights, JSON).
- :mod:`common.paths`: locating a bundle's folder from any working directory.

Subpackages are imported on first use (``import common.masking``) to keep ``import common`` cheap.
"""

__version__ = "0.1.0"
