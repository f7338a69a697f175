"""Write a NIfTI volume as a DICOM CT series with pydicom (test helper; no DICOM writer exists in MONAI).

One file per slice along the volume's third axis, in the patient (LPS) coordinates DICOM uses:
``ImagePositionPatient`` of slice ``k`` is the LPS position of voxel ``(0, 0, k)``;
``ImageOrientationPatient`` gives the directions of the volume's first axis (along a row, i.e.
increasing column index) and second axis (down a column); the pixel array of slice ``k`` is
``volume[:, :, k].T`` (rows = second axis). Stored values are ``(HU - intercept) / slope`` as
unsigned 16-bit, so a reader must apply ``RescaleSlope``/``RescaleIntercept`` to get HU back.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_ct_series(nifti: str | Path, folder: str | Path, slope: float = 1.0, intercept: float = -2048.0, modality: str = "CT",
                    series_uid: str | None = None, slices: list[int] | None = None, z_positions: list[float] | None = None,
                    prefix: str = "slice") -> Path:
    """Write ``nifti`` (HU) into ``folder`` as ``slice_<k>.dcm`` files; ``slices`` picks which slices
    (default all, e.g. leave one out for a gap), ``z_positions`` overrides each written slice's position
    offset along the slice normal (mm, for non-uniform spacing), ``series_uid``/``modality`` the tags,
    ``prefix`` the file names (``<prefix>_<n>.dcm``)."""
    img = nib.load(str(nifti))
    vol = np.asarray(img.dataobj, dtype=np.float64)
    affine = RAS_TO_LPS @ img.affine
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    row_dir, col_dir = affine[:3, 0] / spacing[0], affine[:3, 1] / spacing[1]
    normal = affine[:3, 2] / spacing[2]
    study, series, frame = generate_uid(), series_uid or generate_uid(), generate_uid()
    stored = np.round((vol - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("values do not fit unsigned 16-bit with this slope/intercept")
    for n, k in enumerate(slices if slices is not None else range(vol.shape[2])):
        position = affine[:3, :3] @ np.array([0.0, 0.0, k]) + affine[:3, 3]
        if z_positions is not None:
            position = affine[:3, 3] + normal * z_positions[n]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName = modality, "TEST0001", "Test^Phantom"
        ds.StudyDate = ds.SeriesDate = datetime.date(2026, 1, 1).strftime("%Y%m%d")
        ds.StudyTime, ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "120000", "", "O", "", "1", ""
        ds.SeriesNumber, ds.InstanceNumber = 1, n + 1
        ds.ImagePositionPatient = [float(f"{v:.6f}") for v in position]
        ds.ImageOrientationPatient = [float(f"{v:.6f}") for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # (between rows, between columns)
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T.astype(np.uint16)).tobytes()
        ds.save_as(folder / f"{prefix}_{n:04d}.dcm", enforce_file_format=True)
    return folder


#: what real scanners' series do that tidy ones do not (each may be switched on in :func:`write_scanner_series`)
SCANNER_QUIRKS = ("sop_only_in_file_meta", "empty_charset", "no_slice_thickness", "no_patient_study", "implicit_vr")


def write_scanner_series(nifti: str | Path, folder: str | Path, quirks: tuple[str, ...] = SCANNER_QUIRKS,
                         drop: tuple[str, ...] = ()) -> Path:
    """Write ``nifti`` (HU) as a series whose headers are a real scanner's.

    The header template is a GE HiSpeed CT/i slice (``CT_small.dcm`` in pydicom's test data): private
    GEMS groups, empty type-2 strings, signed pixels with a rescale intercept. The volume is reoriented
    to the usual axial layout (rows to posterior, columns to the left, ``ImageOrientationPatient``
    ``[1, 0, 0, 0, 1, 0]``); instances are numbered from the head down (opposite to the stacking
    order); files are named ``IM00001``... without extension. ``quirks`` picks from
    :data:`SCANNER_QUIRKS`; ``drop`` deletes further attributes from every slice (e.g.
    ``"FrameOfReferenceUID"``, ``"InstanceNumber"``).
    """
    import copy

    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import ImplicitVRLittleEndian

    template = dcmread(get_testdata_file("CT_small.dcm"))
    img = nib.load(str(nifti))
    lps = nib.orientations.axcodes2ornt(("L", "P", "S"))
    img = img.as_reoriented(nib.orientations.ornt_transform(nib.orientations.io_orientation(img.affine), lps))
    vol = np.asarray(img.dataobj, dtype=np.float64)
    affine = RAS_TO_LPS @ img.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    n = vol.shape[2]
    for k in range(n):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.InstanceNumber = n - k  # numbered from the head down
        ds.ImagePositionPatient = [f"{v:.6f}" for v in affine[:3, :3] @ np.array([0.0, 0.0, k]) + affine[:3, 3]]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*affine[:3, 0] / spacing[0], *affine[:3, 1] / spacing[1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.PixelData = np.ascontiguousarray(np.round(vol[:, :, k].T + 1024).astype(np.int16)).tobytes()
        if "sop_only_in_file_meta" in quirks:
            del ds.SOPClassUID, ds.SOPInstanceUID
        if "empty_charset" in quirks:
            ds.SpecificCharacterSet = ""
        if "no_slice_thickness" in quirks:
            del ds.SliceThickness
        if "no_patient_study" in quirks:
            for attr in ("PatientBirthDate", "ReferringPhysicianName", "AccessionNumber", "StudyID"):
                delattr(ds, attr)
        if "implicit_vr" in quirks:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        for attr in drop:
            delattr(ds, attr)
        ds.save_as(folder / f"IM{k + 1:05d}", enforce_file_format=True)
    return folder
