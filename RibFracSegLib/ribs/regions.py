"""A rib step's working-grid regions and centrelines as its result: the label image on the input grid and
one `Rib` each (both rib methods, grown and traced, end here)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from .anatomy import fill_holes_per_slice
from .labels import Rib, RibLabels, rib_label_value
from .numbering import RibRegion


def input_labels(regions_img: np.ndarray, regions: list[RibRegion], grid, canon) -> tuple[np.ndarray, dict]:
    """Label image on the input grid: full-resolution bone inside each rib's region, marrow filled.

    In-plane 3x3 smoothing before the threshold keeps thin cortex that partial volume dims; holes
    enclosed in an axial slice (fatty marrow below the threshold) are filled within the region.
    """
    value = np.zeros(int(regions_img.max()) + 1, np.uint8)
    for r in regions:
        value[r.label] = rib_label_value(r.side, r.number)
    shape = canon.array.shape
    full = np.zeros(shape, np.uint8)
    work = value[regions_img]
    found = ndimage.find_objects((work > 0).astype(np.uint8))
    counts = dict.fromkeys((r.label for r in regions), 0)
    if found:  # only the ribs' box is brought to full resolution (the nearest-neighbour copy of it)
        box = tuple(slice(w.start * f, n if w.stop == m else min(n, w.stop * f))
                    for w, f, n, m in zip(found[0], grid.factors, shape, work.shape))
        block = grid.upsample(work[found[0]], tuple(b.stop - b.start for b in box))
        hu = ndimage.uniform_filter(canon.array[box], size=(1, 3, 3), output=np.float32)  # no float copy of the box first
        inside = block > 0
        bone = inside & (hu > defaults.RIB_BONE_HU_FULL)
        bone = fill_holes_per_slice(bone) & inside
        block[~bone] = 0
        full[box] = block
        per_value = np.bincount(block[block > 0], minlength=256)  # rib voxels only: 10x faster than all of the box
        counts = {r.label: int(per_value[value[r.label]]) for r in regions}
    return canon.to_input(full), counts


def rib_labels(image: sitk.Image, regions_img: np.ndarray, regions: list[RibRegion], lines: dict,
               grid, canon, anchor: str, notes: list[str], labelled: bool = True) -> RibLabels:
    """`RibLabels` of numbered `regions` (working-grid partition `regions_img`, centrelines `lines` by
    region label): labels on `image`'s grid, ribs sorted by side, number, height. `labelled=False`
    defers the label image (`RibLabels.finish_labels`): the rib step makes it only for the set it keeps."""
    ribs = [Rib(side=r.side, number=r.number, centreline_lps=lines[r.label], voxel_count=0,
                number_confidence=r.confidence) for r in regions]
    by_label = {region.label: rib for rib, region in zip(ribs, regions)}

    def make() -> sitk.Image:
        labels, counts = input_labels(regions_img, regions, grid, canon)
        for label, n in counts.items():
            by_label[label].voxel_count = int(n)
        out = sitk.GetImageFromArray(labels)
        out.CopyInformation(image)
        return out

    ribs.sort(key=lambda r: (r.side, r.number or 99, -r.centreline_lps[:, 2].mean()))
    result = RibLabels(labels=None, ribs=ribs, numbering=anchor, notes=notes, make_labels=make)
    return result.finish_labels() if labelled else result
