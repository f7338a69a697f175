"""Writing predicted label maps: one NIfTI per case, atomically, never over an existing file.

MONAI's ``SaveImaged`` writes in place (a killed run leaves a truncated ``.nii.gz`` that looks
finished) and overwrites silently. Inference here skips cases whose output already exists (so an
interrupted run resumes where it stopped) unless ``overwrite`` is set, and writes every file under a
temporary name first.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.transforms import SaveImaged

from common.io import atomic_write
from common.transforms.checks import source_name

logger = logging.getLogger(__name__)


def case_name(path: str | os.PathLike) -> str:
    """File name without folder and NIfTI suffix: ``/x/img0001.nii.gz`` -> ``img0001``; a DICOM series
    folder keeps its whole name (``/x/1.2.840.1/`` -> ``1.2.840.1``: UIDs are full of dots)."""
    name = Path(path).name
    if Path(path).is_dir():
        return name
    for suffix in (".nii.gz", ".nii", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def output_path(image_path: str | os.PathLike, output_dir: str | os.PathLike, postfix: str = "seg") -> Path:
    """Where the prediction for ``image_path`` goes: ``<output_dir>/<case>_<postfix>.nii.gz``."""
    return Path(output_dir) / f"{case_name(image_path)}{'_' + postfix if postfix else ''}.nii.gz"


def pending_cases(
    items: Sequence[Mapping[str, Any]], output_dir: str | os.PathLike, postfix: str = "seg", overwrite: bool = False, image_key: str = "image"
) -> list[Mapping[str, Any]]:
    """The entries of ``items`` still to predict: all when ``overwrite``, else those without an output.

    Also refuses two inputs that would write the same output file (same case name in two folders).
    """
    sources: dict[Path, str] = {}
    todo = []
    for it in items:
        src = it[image_key][0] if isinstance(it[image_key], (list, tuple)) else it[image_key]
        out = output_path(src, output_dir, postfix)
        if out in sources:
            raise ValueError(f"inputs '{sources[out]}' and '{src}' would both be written to {out}; rename one")
        sources[out] = str(src)
        if overwrite or not out.exists():
            todo.append(it)
    done = len(items) - len(todo)
    if done:
        logger.info(f"{done} of {len(items)} cases already have a prediction in {output_dir}: skipped (set overwrite=true to redo them).")
    return todo


class SaveLabelMapd(SaveImaged):
    """Save ``(1, H, W, D)`` label maps (already inverted to the input's grid) as NIfTI with their affine.

    A ``SaveImaged`` (same role in a bundle's ``postprocessing``, so MONAI Label's infer task, which
    drops ``SaveImaged`` instances and writes the result itself, leaves it out), with its own write.

    Args:
        keys: prediction keys to save.
        output_dir: destination folder (created).
        output_postfix: appended to the case name (``img0001_seg.nii.gz``).
        output_dtype: integer dtype of the saved map.
        overwrite: replace an existing file; otherwise an existing file raises ``FileExistsError``
            (:func:`pending_cases` normally filters those cases out before loading).
        source_key: key whose ``filename_or_obj`` names the case (the input image).
    """

    def __init__(
        self,
        keys: Any,
        output_dir: str,
        output_postfix: str = "seg",
        output_dtype: Any = np.uint8,
        overwrite: bool = False,
        source_key: str = "image",
    ) -> None:
        super().__init__(keys, output_dir=output_dir, output_postfix=output_postfix, output_dtype=output_dtype, resample=False, separate_folder=False)
        self.output_dir = Path(output_dir)
        self.postfix = output_postfix
        self.dtype = np.dtype(output_dtype)
        self.overwrite = overwrite
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        src = source_name(d.get(self.source_key), fallback="")
        for key in self.key_iterator(d):
            pred = d[key]
            if not src:
                src = source_name(pred, fallback="prediction")
            path = output_path(src, self.output_dir, self.postfix)
            if path.exists() and not self.overwrite:
                raise FileExistsError(f"{path} exists; not overwriting it (set overwrite=true to replace predictions)")
            array = torch.as_tensor(pred).detach().cpu().numpy()
            if array.ndim == 4:
                array = array[0]
            affine = np.asarray(torch.as_tensor(pred.affine).cpu(), dtype=np.float64)
            img = nib.Nifti1Image(np.rint(array).astype(self.dtype), affine)
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
            data = img.to_bytes()
            if path.name.endswith(".gz"):
                data = gzip.compress(data, compresslevel=6)
            atomic_write(path, lambda f, data=data: f.write(data))
            d[f"{key}_path"] = str(path)
            logger.info(f"Saved {path}")
        return d

