"""Cases: which files a user's inputs name, and the one rule that turns a path into a case id.

Every tool names a CT the same way, so `segment`, `l3`, the evaluator, training and the Slicer
batch files of one scan line up: strip the image suffix, then a RibFrac role tag, e.g.
`RibFrac12-image.nii.gz` -> `RibFrac12`, `RibFrac12-label.nii.gz` -> `RibFrac12`, a DICOM
folder `/data/patient7/` -> `patient7`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import defaults
from .errors import InputError


def strip_image_suffix(name: str) -> str:
    """'a.b.nii.gz' -> 'a.b'; names without a known image suffix are returned unchanged."""
    for suffix in defaults.IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def case_id(path: str | Path) -> str:
    """The case id of a CT file, a label file or a DICOM folder (see the module docstring)."""
    name = strip_image_suffix(Path(path).name.rstrip("/"))
    for tag in defaults.CASE_ROLE_TAGS:
        if name.endswith(tag) and len(name) > len(tag):
            return name[: -len(tag)]
    return name


def is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(defaults.IMAGE_SUFFIXES)


def _folder_images(folder: Path) -> list[Path]:
    """CT files of a folder: its RibFrac `*-image` files when it has them (labels are not CTs)."""
    images = sorted(p for p in folder.iterdir() if is_image(p))
    tagged = [p for p in images if strip_image_suffix(p.name).endswith("-image")]
    return tagged or [p for p in images if not strip_image_suffix(p.name).endswith("-label")]


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """CT paths from files, `.txt` list files (relative lines resolved beside the list), and folders.

    A folder holding image files gives those files; any other path (a CT file or a DICOM series
    folder) is kept as it is and `io.read_ct` says what is wrong with it if anything. A path given
    here that does not exist is a mistyped argument, refused before any work (InputError); a missing
    file named inside a list is one case that fails.
    """
    cases: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise InputError(f"CT not found: {item}. Give a NIfTI/NRRD/MHA file, a DICOM series folder, a folder "
                             "of CTs or a .txt list of paths.")
        if item.is_file() and item.suffix.lower() in defaults.LIST_SUFFIXES:
            lines = [ln.strip() for ln in item.read_text(encoding="utf-8").splitlines()]
            cases += [item.parent / ln for ln in lines if ln and not ln.startswith("#")]
        elif item.is_dir() and any(is_image(p) for p in item.iterdir()):
            cases += _folder_images(item)
        else:
            cases.append(item)
    return cases


def check_unique_ids(paths: Iterable[Path]) -> None:
    """Two inputs with one case id would overwrite each other's outputs: refuse before any work."""
    seen: dict[str, Path] = {}
    for path in paths:
        cid = case_id(path)
        if cid in seen and seen[cid] != path:
            raise InputError(f"Inputs {seen[cid]} and {path} both have case id {cid!r}, so their results would "
                             "overwrite each other; rename one or run them into different --out folders.")
        seen[cid] = path


@dataclass(frozen=True)
class LabelledCase:
    """A RibFrac-layout case: `<id>-image.nii.gz` with `<id>-label.nii.gz` beside it."""

    public_id: str
    image: Path
    label: Path


def labelled_cases(data_dir: str | Path) -> list[LabelledCase]:
    """Every image with a label beside it in a RibFrac-layout folder, sorted by file name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"Data folder not found: {data_dir}. Give a RibFrac-layout folder "
                         "(RibFracN-image.nii.gz + RibFracN-label.nii.gz), e.g. from `ribfracseg phantom`.")
    labels = {case_id(p): p for p in sorted(data_dir.iterdir())
              if is_image(p) and strip_image_suffix(p.name).endswith("-label")}
    cases = [LabelledCase(case_id(p), p, labels[case_id(p)]) for p in sorted(data_dir.iterdir())
             if is_image(p) and strip_image_suffix(p.name).endswith("-image") and case_id(p) in labels]
    if not cases:
        raise InputError(f"No RibFracN-image.nii.gz / RibFracN-label.nii.gz pairs in {data_dir}.")
    return cases
