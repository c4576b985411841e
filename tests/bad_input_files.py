"""Files people really have, made small: good and bad CTs, DICOM series, checkpoints, for the bad-input table.

Every maker takes a folder and returns the path to give the command line. Volumes are tiny (about
40 x 40 x 24 voxels) so the whole table runs in seconds.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from RibFracSegLib.checkpoint import Checkpoint, save_checkpoint
from RibFracSegLib.networks import build_network

SPACING = (1.5, 1.5, 2.5)  # x, y, z mm: 60 x 60 x 60 mm for the default shape
SHAPE = (24, 40, 40)  # k, j, i
UID = "1.2.826.0.1.3680043.2.1125.77"
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def ct_array(shape=SHAPE, bone: bool = True) -> np.ndarray:
    """Air, a body of soft tissue and fat, and (optionally) a rib-like bar of bone: int16 HU."""
    k, j, i = shape
    array = np.full(shape, -1000, np.int16)
    array[:, j // 8: -j // 8, i // 8: -i // 8] = -100
    array[:, j // 4: -j // 4, i // 4: -i // 4] = 40
    if bone:
        array[k // 3: 2 * k // 3, j // 4: j // 4 + 3, i // 4: -i // 4] = 900
    return array


def image(array: np.ndarray, spacing=SPACING) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing))
    return img


def write(img: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=path.name.endswith((".gz", ".nrrd", ".mha")))
    return path


def good_ct(folder: Path, name: str = "good.nii.gz", **kwargs) -> Path:
    return write(image(ct_array(**kwargs)), folder / name)


def cut(path: Path, keep: float) -> Path:
    """Keep the first `keep` share of the file's bytes (an interrupted copy or download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def flip_byte(path: Path, at: float = 0.5) -> Path:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def gzip_of_truncated_nifti(folder: Path) -> Path:
    """A complete gzip stream around a NIfTI that was cut before compressing."""
    raw = cut(good_ct(folder, "short.nii"), 0.6).read_bytes()
    path = folder / "short-gzipped.nii.gz"
    path.write_bytes(gzip.compress(raw))
    return path


def huge_header(folder: Path) -> Path:
    """A MetaImage header declaring 4000^3 int16 voxels (about 2 TB to process), no data read."""
    path = folder / "huge.mhd"
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4000 4000 4000\nElementType = MET_SHORT\n"
                    "ElementSpacing = 0.5 0.5 0.5\nElementDataFile = huge.raw\n")
    (folder / "huge.raw").write_bytes(b"\0" * 64)
    return path


def dicom_series(folder: Path, array: np.ndarray | None = None, z_mm: list[float] | None = None,
                 modality: str = "CT", series: str = "1", tilt_mm_per_slice: float = 0.0,
                 offset: int = 0, description: str = "chest") -> Path:
    """Write a slice per file with the geometry tags a scanner writes; stored = HU + offset, no rescale
    tags (so `offset` 1024 is a CT whose rescale intercept was lost)."""
    array = ct_array() if array is None else array
    z_mm = [k * SPACING[2] for k in range(array.shape[0])] if z_mm is None else z_mm
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    stored = array.astype(np.int32) + offset
    for k, z in enumerate(z_mm):
        img = sitk.GetImageFromArray(stored[k:k + 1].astype(np.int16))
        img.SetSpacing(SPACING)
        tags = {"0008|0060": modality, "0020|000e": f"{UID}.{series}", "0020|000d": f"{UID}.0",
                "0020|0032": f"0\\{k * tilt_mm_per_slice:g}\\{z:g}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0020|0013": str(k + 1), "0008|0016": CT_SOP_CLASS, "0008|0018": f"{UID}.{series}.{k + 1}",
                "0008|103e": description, "0028|0030": f"{SPACING[1]}\\{SPACING[0]}"}
        for key, value in tags.items():
            img.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{series}-{k:03d}.dcm"))
        writer.Execute(img)
    return folder


def tiny_fracture_checkpoint(path: Path) -> Path:
    """A random-weight FracNet U-Net (4 channels, 16^3 patches): fast, and loads like a real one."""
    torch.manual_seed(0)
    model = build_network("fracnet_unet", first_out_channels=4)
    return save_checkpoint(path, Checkpoint.from_model("fracnet_unet", model, {"first_out_channels": 4},
                                                       patch_size=(16, 16, 16)))
