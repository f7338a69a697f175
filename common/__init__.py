"""Shared Python for the ssl3d MONAI bundle collection.

Bundles are configuration only; everything they instantiate beyond MONAI lives here, one concept
per module:

- :mod:`common.data`: embedded synthetic CT, CT-triage and brain-tumour MRI phantoms, datalist
  resolution and validation, the datalist CLI, seeded training subsets, an error-propagating thread loader.
- :mod:`common.transforms`: transforms MONAI lacks (loading with file-naming errors, case checks,
  BraTS region conversion in either numbering, atomic label-map saving, CT window channels).
- :mod:`common.methods`: the four methods, one folder each (``subfore``, ``medcontext``, ``anatomask``,
  ``ctfm``): masking, model wrapper, loss, batch preparation. Nothing outside it imports a method.
- :mod:`common.masking`: helpers shared by the methods' masking (seeded subsets, grids to voxels).
- :mod:`common.engines`: pieces for MONAI's ``SupervisedTrainer`` (the ``MethodOutput`` every method's
  forward returns, self-target batches, EMA teacher updates, the fail-soft evaluator).
- :mod:`common.retrieval`: CT-FM scan embeddings, the embedding index, top-k cosine queries and its CLI.
- :mod:`common.handlers`: atomic checkpoints/resume, best-model saving, per-case/per-class metric
  reports, weight export, TensorBoard output.
- :mod:`common.networks`: encoder definitions for exporting, loading pretrained weights with a report.
- :mod:`common.runs`: run identity, provenance records, the preprocessing contract.
- :mod:`common.dev.config_sources`: the blocks and per-bundle sources the bundle configs are written from.
- :mod:`common.experiments`: drivers over bundles (label-efficiency sweeps).
- :mod:`common.io`: atomic file writes (checkpoints, weights, JSON).
- :mod:`common.paths`: locating a bundle's folder from any working directory.

Subpackages are imported on first use (``import common.masking``) to keep ``import common`` cheap.
"""

__version__ = "0.1.0"
