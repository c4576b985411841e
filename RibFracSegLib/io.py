"""Reading CTs and writing results safely.

Any CT SimpleITK reads is accepted (NIfTI, NRRD, MHA, a DICOM series folder) with its geometry.
Every writer goes through a temporary name and an atomic rename, so a crash or a cancel never
leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import SimpleITK as sitk

from . import ct_checks, dicom
from .errors import InputError, InputWarning

__all__ = ["InputError", "InputWarning", "atomic_path", "read_ct", "write_image", "write_text"]


def read_ct(path: str | os.PathLike) -> sitk.Image:
    """Read a CT volume (file or DICOM series folder) keeping its geometry; raise InputError if unusable.

    Before the voxels are read: the volume must fit in memory, a compressed/NIfTI file must be
    complete, a DICOM folder's CT series must be a regular slice stack. After: 3-D, one channel,
    more than a slice, finite Hounsfield units (`ct_checks`). Doubts are `InputWarning`s.
    """
    path, header = Path(path), False
    if not path.exists():
        raise InputError(f"CT not found: {path}. Give a NIfTI/NRRD/MHA file or a DICOM series folder.")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes): an interrupted copy or export? Copy it again.")
    try:
        if path.is_dir():
            image = dicom.read_series(path)
        else:
            header = ct_checks.check_file(path)
            image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1].strip()[:160]
        if header:  # the header was read, the voxels were not
            raise InputError(f"{path.name} is damaged or truncated: its header reads but its voxels do not "
                             f"({detail}). Copy or export it again.") from None
        raise InputError(f"Cannot read {path} as an image: damaged, truncated or not an image ({detail}). "
                         "Give a NIfTI/NRRD/MHA file or a DICOM series folder.") from None
    ct_checks.check_image(image, path.name)
    return image


def read_ct_and_warnings(path: str | os.PathLike) -> tuple[sitk.Image, list[str]]:
    """`read_ct`, returning its InputWarnings as lines (for batch reports) instead of emitting them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        image = read_ct(path)
    for w in caught:
        if not issubclass(w.category, InputWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return image, [str(w.message) for w in caught if issubclass(w.category, InputWarning)]


class OutputError(OSError):
    """Results cannot be written (disk full, read-only folder, folder in use): a batch stops here."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


PARTIAL_MARKER = ".partial-"  # in the names of temporary files; a killed run may leave them behind
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EROFS, errno.EACCES, errno.EPERM}


def output_error(final: Path, err: BaseException, resume: bool = True) -> OutputError:
    """One line naming the file, the cause and what to do (and that a rerun resumes, if `resume`)."""
    if isinstance(err, OutputError):
        return err
    code = getattr(err, "errno", None)
    if code in _FULL:
        why, todo = "no space left (disk full or file-size limit)", "free space or choose another output folder"
    elif code in _DENIED:
        why, todo = "the folder is read-only or not yours", "choose a writable output folder"
    else:
        detail = (getattr(err, "strerror", None) or str(err)).strip().splitlines()
        why, todo = (detail[-1][:160] if detail else type(err).__name__), "check the output folder"
    then = ", then rerun (finished cases are kept)" if resume else ""
    return OutputError(code or errno.EIO, f"cannot write {final}: {why}; {todo}{then}")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds.

    Failing to create, fill or rename the file raises OutputError; the temporary file is removed.
    """
    final = Path(final)
    suffix = "".join(final.suffixes) or ".tmp"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}{PARTIAL_MARKER}", suffix=suffix, dir=final.parent)
        os.close(fd)
    except OSError as err:
        raise output_error(final, err) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp_path, final)
    except OSError as err:
        raise output_error(final, err) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write an image atomically (compressed for .nii.gz/.nrrd/.mha), refusing a short NIfTI file.

    ITK's NIfTI writer reports no error when the disk fills up; the written file is measured instead.
    """
    from . import nifti

    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
        except RuntimeError as err:
            raise output_error(Path(path), OSError(errno.EIO, str(err))) from None
        if nifti.is_nifti(tmp) and not nifti.written_completely(tmp):
            raise output_error(Path(path), OSError(errno.ENOSPC, "short write"))
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")  # reports hold mm³, µ: never the locale's encoding
    return Path(path)
