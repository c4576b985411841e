"""Reading CTs and writing results safely.

Any CT SimpleITK reads is accepted (NIfTI, NRRD, MHA, a DICOM series folder) with its geometry.
Every writer goes through a temporary name and an atomic rename, so a crash or a cancel never
leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import SimpleITK as sitk


class InputError(ValueError):
    """A user-supplied input is unusable; the message says what is wrong and what to do."""


def read_ct(path: str | os.PathLike) -> sitk.Image:
    """Read a CT volume (file or DICOM series folder) keeping its geometry; raise InputError if unusable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"CT not found: {path}. Give a NIfTI/NRRD/MHA file or a DICOM series folder.")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError(f"No DICOM series in folder {path}. Point to the folder holding the .dcm files.")
            # The series with the most slices is the CT a user means when a folder holds scouts too.
            files = max((reader.GetGDCMSeriesFileNames(str(path), s) for s in series), key=len)
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise InputError(f"Cannot read {path} as an image ({str(err).strip().splitlines()[-1]}). "
                         "Give a NIfTI/NRRD/MHA file or a DICOM series folder.") from None
    if image.GetDimension() != 3:
        raise InputError(f"{path} is {image.GetDimension()}-D; a CT volume must be 3-D.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "a CT must be single-channel (HU).")
    if min(image.GetSize()) < 2:
        raise InputError(f"{path} has size {image.GetSize()}; a CT volume needs at least 2 voxels on every axis.")
    return image


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name.split('.')[0]}-", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write an image atomically (compressed for .nii.gz/.nrrd/.mha)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
