"""Label maps written as DICOM-SEG objects that reference the DICOM series they were predicted from.

A prediction is inverted to the input's grid before it is saved (``Invertd``), so for a DICOM
series input it is a ``(1, X, Y, Z)`` label map whose affine (RAS) is the series'. Each source slice
is mapped back by geometry, not by assumed axis order: for every pixel ``(row, column)`` of a slice,
its patient position (``ImagePositionPatient``, ``ImageOrientationPatient``, ``PixelSpacing``) goes
through the inverse affine to a voxel of the label map (nearest voxel; outside the map is
background). The frames are written with highdicom's ``Segmentation`` (binary, one segment per
class, the source slices as referenced instances), so a PACS or viewer shows them on the series.

Upstream gap: MONAI writes NIfTI/NRRD/PNG only; MONAI Label writes DICOM-SEG from a DICOMweb
datastore through ITK. This writes it for a local series folder with highdicom (pure Python).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import SaveImaged

from common.transforms.checks import source_name
from common.transforms.save import case_name

logger = logging.getLogger(__name__)

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])
#: type-2 attributes (required, may be empty) that highdicom reads from the source images
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
                "StudyID", "AccessionNumber", "SliceThickness")


def frames_for_series(labels: np.ndarray, affine: np.ndarray, datasets: Sequence[Any]) -> np.ndarray:
    """``(n_slices, rows, columns)`` label frames for the series' slices, in the order given.

    Args:
        labels: ``(X, Y, Z)`` integer label map.
        affine: its ``4 x 4`` voxel-to-RAS affine.
        datasets: the series' pydicom datasets (headers are enough).
    """
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    frames = []
    for ds in datasets:
        rows, cols = int(ds.Rows), int(ds.Columns)
        iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        spacing_r, spacing_c = (float(v) for v in ds.PixelSpacing)  # between rows, between columns
        origin = inverse[:3, :3] @ (RAS_FROM_LPS @ np.asarray(ds.ImagePositionPatient, dtype=np.float64)) + inverse[:3, 3]
        step_c = inverse[:3, :3] @ (RAS_FROM_LPS @ iop[:3]) * spacing_c  # voxel step per column (along a row)
        step_r = inverse[:3, :3] @ (RAS_FROM_LPS @ iop[3:]) * spacing_r  # voxel step per row
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        idx = np.rint(origin[:, None, None] + r[None] * step_r[:, None, None] + c[None] * step_c[:, None, None]).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.asarray(labels.shape)[:, None, None]), axis=0)
        frame = np.zeros((rows, cols), dtype=labels.dtype)
        frame[inside] = labels[idx[0][inside], idx[1][inside], idx[2][inside]]
        frames.append(frame)
    return np.stack(frames)


def source_headers(series_folder: str | os.PathLike) -> list[Any]:
    """The series' headers made acceptable to highdicom where the standard allows, else one clear error.

    Real scanners' files differ from tidy ones in ways highdicom does not accept as they are: SOP
    Class/Instance UIDs only in the file meta (or empty in the data set), an empty Specific Character
    Set (means the default repertoire), type-2 attributes absent instead of empty (patient/study
    attributes, Slice Thickness). Those are filled from the file meta or as empty values. What a SEG
    cannot do without (a SOP UID anywhere, the Frame of Reference UID it must share with the series)
    raises ``ValueError`` naming the file and the attribute.
    """
    import pydicom

    from common.data.dicom import dicom_files

    datasets = []
    for f in dicom_files(series_folder):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        meta = getattr(ds, "file_meta", None) or {}
        for attr, fallback in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            if not str(ds.get(attr, "") or ""):
                value = str(getattr(meta, fallback, "") or "")
                if not value:
                    raise ValueError(f"{f}: no {attr} (0008,{'0016' if attr == 'SOPClassUID' else '0018'}) in the data set or the file meta, "
                                     "so a DICOM-SEG cannot reference this slice; write NIfTI only (dicom_seg false)")
                setattr(ds, attr, value)
        if not str(ds.get("FrameOfReferenceUID", "") or ""):
            raise ValueError(f"{f}: no FrameOfReferenceUID (0020,0052), which a DICOM-SEG must share with its series; "
                             "write NIfTI only (dicom_seg false)")
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet  # empty = the default repertoire, which an absent attribute also means
        for attr in TYPE2_COPIED:  # type 2: required, may be empty; anonymised or older series often drop them
            if attr not in ds:
                setattr(ds, attr, "")
        datasets.append(ds)
    return datasets


def write_dicom_seg(
    series_folder: str | os.PathLike, labels: np.ndarray, affine: np.ndarray, segments: Mapping[int, str], path: str | os.PathLike,
    algorithm: str = "ssl3d bundle", version: str = "1",
) -> Path:
    """Write ``labels`` (``(X, Y, Z)``) as a DICOM-SEG referencing the series in ``series_folder``.

    ``segments`` maps each label value to its name; segment numbers are ``1..N`` in increasing label
    value (DICOM requires consecutive numbers: BraTS' ``{1, 2, 4}`` become segments 1, 2, 3). A value
    without a name raises ``ValueError``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    datasets = source_headers(series_folder)
    frames = frames_for_series(np.asarray(labels), affine, datasets)
    values = sorted(int(v) for v in segments)
    unnamed = sorted(set(np.unique(frames).tolist()) - {0, *values})
    if unnamed:
        raise ValueError(f"label values {unnamed} have no segment name (named: {values})")
    lookup = np.zeros(max(values) + 1, dtype=np.uint8)
    lookup[values] = np.arange(1, len(values) + 1)
    frames = lookup[frames]
    algorithm_id = hd.AlgorithmIdentificationSequence(name=algorithm, version=version, family=codes.cid7162.ArtificialIntelligence)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=i, segment_label=name, segmented_property_category=codes.SCT.Organ, segmented_property_type=codes.SCT.Organ,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm_id,
        )
        for i, name in enumerate((segments[v] for v in values), start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="ssl3d MONAI bundles", manufacturer_model_name=algorithm, software_versions=version, device_serial_number="none",
        series_description=f"{algorithm} segmentation", omit_empty_frames=False,  # every source slice referenced, empty or not
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


class SaveDicomSegd(SaveImaged):
    """Also write a prediction as DICOM-SEG when the input was a DICOM series folder (``enabled``).

    A ``SaveImaged`` like :class:`common.transforms.SaveLabelMapd` (MONAI Label drops both and writes its
    own result). The file is ``<output_dir>/<series folder>_<postfix>.dcm``; inputs that are not
    series folders are left to the NIfTI writer (logged once).

    Args:
        keys: prediction keys (``(1, X, Y, Z)`` label maps on the input grid).
        output_dir: destination folder.
        segments: label value -> segment name (e.g. ``{1: "spleen", ...}``; BraTS: the written map's values).
        enabled: ``False`` makes the transform a no-op (the bundles' ``dicom_seg`` setting).
        output_postfix, overwrite, source_key: as :class:`common.transforms.SaveLabelMapd`.
        algorithm, version: the algorithm identification written into each segment.
    """

    def __init__(
        self, keys: Any, output_dir: str, segments: Mapping[int, str], enabled: bool = True, output_postfix: str = "seg",
        overwrite: bool = False, source_key: str = "image", algorithm: str = "ssl3d bundle", version: str = "1",
    ) -> None:
        super().__init__(keys, output_dir=output_dir, output_postfix=output_postfix, resample=False, separate_folder=False)
        self.output_dir, self.segments, self.enabled = Path(output_dir), {int(k): str(v) for k, v in segments.items()}, bool(enabled)
        self.postfix, self.overwrite, self.source_key = output_postfix, overwrite, source_key
        self.algorithm, self.version = algorithm, version
        self._said_skip = False

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.enabled:
            return d
        src = source_name(d.get(self.source_key), fallback="")
        if not src or not Path(src).is_dir():
            if not self._said_skip:
                logger.info(f"dicom_seg: {src or 'an input'} is not a DICOM series folder; its prediction is written as NIfTI only")
                self._said_skip = True
            return d
        for key in self.key_iterator(d):
            pred = d[key]
            path = self.output_dir / f"{case_name(src)}{'_' + self.postfix if self.postfix else ''}.dcm"
            if path.exists() and not self.overwrite:
                raise FileExistsError(f"{path} exists; not overwriting it (set overwrite=true to replace predictions)")
            array = torch.as_tensor(pred).detach().cpu().numpy()
            labels = np.rint(array[0] if array.ndim == 4 else array).astype(np.int64)
            affine = np.asarray(torch.as_tensor(pred.affine).cpu(), dtype=np.float64)
            write_dicom_seg(src, labels, affine, self.segments, path, self.algorithm, self.version)
            d[f"{key}_dicom_seg_path"] = str(path)
            logger.info(f"Saved {path} (DICOM-SEG referencing {src})")
        return d
