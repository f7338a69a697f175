"""Masking helpers shared by the methods' masking strategies (each strategy lives with its method in
:mod:`common.methods`): seeded random subsets, per-cell grids expanded to voxels."""

from common.masking.grid import expand_grid
from common.masking.subset import random_subset

__all__ = ["expand_grid", "random_subset"]
