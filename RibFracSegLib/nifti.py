"""What a NIfTI file really holds. SimpleITK reads (and writes) a short .nii/.nii.gz without a word,
and its NIfTI reader turns NaN and Inf voxels into 0.

A truncated download, or a write that hit a full disk, leaves a file whose header declares more
voxels than it holds; ITK fills the missing part with 0 on reading. Reading the stream to its end
(a gzip CRC included), comparing its length with the header and counting non-finite floats in the
raw voxels catches all three.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np

_CHUNK = 1 << 20
_HEAD = 540  # a NIfTI-2 header; NIfTI-1 needs 348
_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 and float64


@dataclass(frozen=True)
class Header:
    data_offset: int
    data_bytes: int
    dtype: Optional[np.dtype]  # set for float voxels only (the ones that can be NaN)

    @property
    def length(self) -> int:
        return self.data_offset + self.data_bytes


@dataclass(frozen=True)
class Scan:
    length: int  # bytes of content (decompressed for .gz)
    header: Optional[Header]  # None if the file is not NIfTI
    nonfinite: int  # NaN/Inf float voxels


def parse_header(head: bytes) -> Optional[Header]:
    """Offset, size and float type of the voxels per a NIfTI-1/2 header; None if `head` is not NIfTI."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    else:
        return None
    n = max(1, min(int(dims[0]), 7))
    voxels = int(np.prod([max(1, int(d)) for d in dims[1:n + 1]], dtype=np.int64))
    kind = _FLOAT_TYPES.get(int(datatype))
    return Header(offset, voxels * max(int(bitpix), 8) // 8, np.dtype(endian + kind) if kind else None)


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def scan(path: str | Path, count_nonfinite: bool = True) -> Scan:
    """Read the whole content once (a .gz file decompressed: a damaged stream raises EOFError,
    gzip.BadGzipFile or zlib.error) and measure it against its NIfTI header."""
    path = Path(path)
    length, head, header, bad, carry = 0, b"", None, 0, b""
    with _open(path) as fh:
        while chunk := fh.read(_CHUNK):
            start = length
            length += len(chunk)
            if len(head) < _HEAD:
                head += chunk[:_HEAD - len(head)]
                if len(head) >= 348 and header is None:
                    header = parse_header(head)
            if count_nonfinite and header is not None and header.dtype is not None:
                lo = max(header.data_offset - start, 0)
                hi = max(min(header.length - start, len(chunk)), 0)
                data = carry + chunk[lo:hi]
                usable = len(data) - len(data) % header.dtype.itemsize
                bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(data[:usable], header.dtype))))
                carry = data[usable:]
    if header is None and len(head) >= 348:
        header = parse_header(head)
    return Scan(length, header, bad)


def written_completely(path: str | Path) -> bool:
    """Cheap check of a file just written: the header's length against the file size or, for gzip,
    against the stream's recorded size (its last 4 bytes; a cut stream ends in other bytes)."""
    path = Path(path)
    try:
        with _open(path) as fh:
            header = parse_header(fh.read(_HEAD))
    except (EOFError, OSError, zlib.error):
        return False
    if header is None:
        return False
    if not path.name.lower().endswith(".gz"):
        return path.stat().st_size >= header.length
    with path.open("rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return struct.unpack("<I", fh.read(4))[0] == header.length % 2**32


def is_nifti(path: str | Path) -> bool:
    return Path(path).name.lower().endswith((".nii", ".nii.gz"))
