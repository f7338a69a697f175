"""Masking helpers shared by the methods' masking strategies (each strategy lives with its method in
:mod:`common.methods`): seeded random subsets, per-cell grids expanded to voxels."""

from common.lazy import exports

#: name -> defining module, imported on first use (see :mod:`common.lazy`)
EXPORTS = {
    "expand_grid": "common.masking.grid",
    "random_subset": "common.masking.subset",
}

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = exports(__name__, EXPORTS)
