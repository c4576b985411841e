"""Write a SimpleITK CT as a DICOM CT series the way a scanner exports one (pydicom, real UIDs, geometry).

Each slice k of the image becomes one CT Image Storage file: Image Position (Patient) of voxel
(0, 0, k), Image Orientation (Patient) from the direction's first two columns, Pixel Spacing as
(row, column) spacing, stored values with a rescale intercept. `order` chooses how the files are
named and numbered (ascending, descending or shuffled), so a reader must place slices by their
positions, never by file or instance order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

INTERCEPT = -1024.0


def write_series(image: sitk.Image, folder: Path, *, order: str = "ascending", study_uid: str | None = None,
                 modality: str = "CT", description: str = "phantom chest", seed: int = 0,
                 series_number: int = 1) -> list[Path]:
    """The image as one series in `folder` (created); returns the files in slice order k = 0, 1, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    hu = sitk.GetArrayFromImage(image)  # [k, j, i]
    stored = np.clip(np.rint(hu - INTERCEPT), -32768, 32767).astype(np.int16)
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    numbers = np.arange(hu.shape[0])
    if order == "descending":
        numbers = numbers[::-1]
    elif order == "shuffled":
        numbers = np.random.default_rng(seed).permutation(hu.shape[0])
    elif order != "ascending":
        raise ValueError(order)
    files = []
    for k in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{series_number}-{int(numbers[k]) + 1:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber = modality, description, series_number
        ds.InstanceNumber = int(numbers[k]) + 1
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Chest", "PH0001", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "A1"
        ds.ReferringPhysicianName, ds.Manufacturer = "", "RibFracSeg tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{image.GetSpacing()[1]:.6f}", f"{image.GetSpacing()[0]:.6f}"]
        ds.SliceThickness = f"{image.GetSpacing()[2]:.6f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{INTERCEPT:g}", "1", "HU"
        ds.KVP, ds.AcquisitionNumber, ds.PatientPosition, ds.BodyPartExamined = "120", 1, "HFS", "CHEST"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files
