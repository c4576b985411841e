"""Which bone the rib frames reach, and what of the rest the fallback (the whole-volume sliding
window) examines: the coverage half of `frame_inference` (see its docstring for the rules).

Bone is what the sliding window would examine (`bone_mask`); of its part no frame reaches
(`frames_reach`), the fallback examines bone labelled rib beside a complete rib set, all of it beside
an incomplete one (`fallback_bone`), never labelled bone beside its own rib's frame
(`beside_own_frame`); its windows keep each examined voxel `fallback_margin` from their faces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from . import defaults
from .geometry import indices_to_lps
from .options import worker_threads
from .orientation import CanonicalVolume
from .ribs.frame import RibFrame
from .ribs.labels import RibLabels, rib_label_value


def _cells_to_voxels(cells: np.ndarray, shape: Sequence[int], cell: int = defaults.SKIP_CELL_VOXELS) -> np.ndarray:
    """Block grid -> voxel mask of `shape` (each block's voxels take its value)."""
    full = cells.repeat(cell, 0).repeat(cell, 1).repeat(cell, 2)
    return full[: shape[0], : shape[1], : shape[2]]


def _whole(shape: Sequence[int]) -> tuple[slice, ...]:
    """The box of a whole array of `shape`."""
    return tuple(slice(0, int(n)) for n in shape)


def bone_mask(volume: CanonicalVolume, cells: Optional[np.ndarray], bone_hu: float,
              box: Optional[tuple[slice, ...]] = None) -> np.ndarray:
    """Canonical mask of the bone fractures are looked for in: HU > `bone_hu` in the blocks `cells`
    (None: anywhere, inside the body or not, as the sliding window without skipping); `box`: only
    its part there (`cells_box`)."""
    box = box or _whole(volume.array.shape)
    bone = volume.array[box] > bone_hu
    if cells is not None:
        cell = defaults.SKIP_CELL_VOXELS
        first = tuple(b.start // cell for b in box)  # a box from `cells_box` starts on a block's edge
        blocks = cells[tuple(slice(f, f - (-(b.stop - b.start) // cell)) for f, b in zip(first, box))]  # ceil
        bone &= _cells_to_voxels(blocks, bone.shape)
    return bone


def cells_box(cells: Optional[np.ndarray], shape: Sequence[int], cell: int = defaults.SKIP_CELL_VOXELS
              ) -> tuple[slice, ...]:
    """Canonical box of the blocks `cells` holds (the whole array when None or empty): bone outside
    it is never looked for, so coverage need not read it (a third of a chest CT's voxels)."""
    found = ndimage.find_objects(cells.astype(np.uint8)) if cells is not None else []
    if not found:
        return _whole(shape)
    return tuple(slice(b.start * cell, min(int(n), b.stop * cell)) for b, n in zip(found[0], shape))


def input_box(volume: CanonicalVolume, box: tuple[slice, ...]) -> tuple[slice, ...]:
    """The input grid's box [k, j, i] holding the canonical `box` (`CanonicalVolume.to_input` of the
    canonical part is the input array's part there)."""
    out: list[slice] = [slice(0)] * 3
    for n, (b, axis, flip) in enumerate(zip(box, volume.axes, volume.flips)):
        size = volume.array.shape[n]
        out[axis] = slice(size - b.stop, size - b.start) if flip else slice(b.start, b.stop)
    return tuple(out)


def fallback_bone(uncovered: np.ndarray, ribs: Optional[RibLabels], frames: Sequence[RibFrame] = (),
                  image: Optional[sitk.Image] = None, box: Optional[tuple[slice, ...]] = None) -> np.ndarray:
    """What the fallback examines of the bone no frame reaches (input grid, or its part at `box`): with
    a complete rib set (`RibLabels.complete`) only bone labelled as rib (any label, unnumbered included:
    a rib's bone beyond its frame's ends, a stretch the frame misses); the spine, sternum and scapulae
    are not ribs and stay unexamined. With `frames` (and the CT `image`), labelled bone beside its own
    rib's frame is left out too (`beside_own_frame`). With an incomplete set a missed rib may lie
    anywhere in the rib cage: all of it that lies in the rib step's cage (`RibLabels.in_cage`: not the
    spine, the sternum, the scapulae; all of it without a cage or an `image`)."""
    if ribs is None:
        return uncovered
    box = box or _whole(uncovered.shape)
    offset = np.array([b.start for b in box])
    if not ribs.complete():
        if ribs.cage is None or image is None:
            return uncovered
        kji = np.argwhere(uncovered)
        out = np.zeros(uncovered.shape, bool)
        out[tuple(kji[ribs.in_cage(indices_to_lps(image, (kji + offset)[:, ::-1].astype(float)))].T)] = True
        return out
    labelled = uncovered & (sitk.GetArrayViewFromImage(ribs.labels)[box] > 0)
    if frames and image is not None:
        labelled &= ~beside_own_frame(labelled, ribs, frames, image, box)
    return labelled


def beside_own_frame(mask: np.ndarray, ribs: RibLabels, frames: Sequence[RibFrame], image: sitk.Image,
                     box: Optional[tuple[slice, ...]] = None) -> np.ndarray:
    """Voxels of `mask` (in no frame, labelled rib; the input grid, or its part at `box`) whose nearest
    section of their own rib's frame is not its first or last: beside the rib, more than the frame's
    half width off its centreline, not past an end. A rib's bone lies within RIB_TRACE_TUBE_MM of it;
    such voxels are another structure grown into the label (on LIDC-IDRI-0001 contrast-filled veins and
    the manubrium, 2.8 cm^3 by rib 1). Past an end the rib may go on beyond its trace: those stay
    (nearest section first or last)."""
    box = box or _whole(mask.shape)
    out = np.zeros(mask.shape, bool)
    kji = np.argwhere(mask)
    if not len(kji):
        return out
    value = sitk.GetArrayViewFromImage(ribs.labels)[box][tuple(kji.T)]
    lps = indices_to_lps(image, (kji + [b.start for b in box])[:, ::-1].astype(float))
    beside = np.zeros(len(kji), bool)
    for label in np.unique(value):
        own = [f for f in frames if rib_label_value(f.side, f.number) == label]
        if not own:
            continue
        interior = np.concatenate([np.arange(len(f.points_lps)) % (len(f.points_lps) - 1) > 0 for f in own])
        pick = value == label
        tree = cKDTree(np.concatenate([f.points_lps for f in own]))
        beside[pick] = interior[tree.query(lps[pick], workers=worker_threads(1))[1]]
    out[tuple(kji[beside].T)] = True
    return out


@dataclass
class Coverage:
    """Which bone the frames reach, and what of the rest the fallback examines (input grid [k, j, i]),
    held in the input grid's box where bone was looked for: whole-grid masks only when asked."""

    covered_box: np.ndarray  # bool, in `grid_box`: bone some frame reaches
    bone_voxels: int  # bone where fractures are looked for (`bone_mask`)
    uncovered_voxels: int  # ... of which no frame reaches
    examined_box: np.ndarray  # bool, in `grid_box`: what the fallback examines of that (`fallback_bone`)
    examined_voxels: int
    beside_voxels: int  # labelled rib beside its own rib's frame (`beside_own_frame`), complete sets only
    box: tuple[slice, ...]  # canonical: where bone was looked for (`cells_box`)
    grid_box: tuple[slice, ...]  # ... the input grid's box holding it
    shape: tuple[int, ...]  # the input grid's

    def _whole(self, part: np.ndarray) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        out[self.grid_box] = part
        return out

    @property
    def covered(self) -> np.ndarray:
        """bool, input grid: bone some frame reaches."""
        return self._whole(self.covered_box)

    @property
    def examined(self) -> np.ndarray:
        """bool, input grid: what the fallback examines."""
        return self._whole(self.examined_box)

    def examined_canonical(self, volume: CanonicalVolume) -> np.ndarray:
        """(n, 3) canonical indices of the voxels the fallback examines (where its windows go): the
        canonical view of the input box is the canonical box."""
        return np.argwhere(volume.to_canonical(self.examined_box)) + [b.start for b in self.box]


def coverage(volume: CanonicalVolume, image: sitk.Image, cells: Optional[np.ndarray], bone_hu: float,
             ribs: Optional[RibLabels], frames: Sequence[RibFrame], chunk: int = 1 << 20) -> Coverage:
    """The bone in `cells` (`bone_mask`), which of it the frames reach (`frames_reach`, `chunk` voxels
    at a time: their LPS points, 24 MB), and what of the rest the fallback examines (`fallback_bone`).
    Read in the cells' box only (`cells_box`)."""
    cbox = cells_box(cells, volume.array.shape)
    ibox = input_box(volume, cbox)
    bone = volume.to_input(bone_mask(volume, cells, bone_hu, cbox))  # the input grid's part at ibox
    kji = np.argwhere(bone)
    covered_box = np.zeros_like(bone)
    offset = np.array([b.start for b in ibox])
    for first in range(0, len(kji), chunk):
        part = kji[first:first + chunk]
        covered_box[tuple(part[frames_reach(frames, image, part + offset)].T)] = True
    del kji
    uncovered = bone & ~covered_box
    examined_box = fallback_bone(uncovered, ribs, frames, image, ibox)
    n_examined = int(examined_box.sum())
    n_beside = (int(fallback_bone(uncovered, ribs, box=ibox).sum()) - n_examined
                if ribs is not None and ribs.complete() else 0)
    return Coverage(covered_box, int(bone.sum()), int(uncovered.sum()), examined_box, n_examined, n_beside, cbox,
                    ibox, tuple(sitk.GetArrayViewFromImage(image).shape))


def frames_reach(frames: Sequence[RibFrame], image: sitk.Image, kji: np.ndarray) -> np.ndarray:
    """(n,) bool: which CT voxels (rows k, j, i) some frame covers (`RibFrame.lps_to_index` finite).
    First each voxel asks the frame whose section centre is nearest it (the one covering it, but where
    frames meet or cross); the rest then ask every frame they are within reach of (box: its S range
    from the points sorted by S, then L and P; then nearest section). Same answer as asking all, at
    about half the cost."""
    lps = indices_to_lps(image, np.asarray(kji, float)[:, ::-1])
    by_s = np.argsort(lps[:, 2], kind="stable")
    lps = lps[by_s]  # sorted by S: a frame's S range is one contiguous run
    inside = _nearest_frame_reach(frames, lps)
    for frame in frames:
        reach = _reach(frame)
        lo, hi = frame.points_lps.min(axis=0) - reach, frame.points_lps.max(axis=0) + reach
        first, stop = np.searchsorted(lps[:, 2], lo[2], "left"), np.searchsorted(lps[:, 2], hi[2], "right")
        run = lps[first:stop]
        ask = np.flatnonzero(~inside[first:stop] & (run[:, 0] >= lo[0]) & (run[:, 0] <= hi[0])
                             & (run[:, 1] >= lo[1]) & (run[:, 1] <= hi[1])) + first
        if not len(ask):
            continue
        distance, nearest = frame.tree().query(lps[ask], distance_upper_bound=reach, workers=worker_threads(1))
        near = np.isfinite(distance)
        ask = ask[near]
        if len(ask):
            inside[ask[np.isfinite(frame.lps_to_index(lps[ask], nearest[near])[:, 0])]] = True
    out = np.zeros(len(lps), bool)
    out[by_s] = inside
    return out


def _reach(frame: RibFrame) -> float:
    """mm from a section's centre beyond which no point is in the frame: a section's corner, half a section on."""
    return ((frame.half + 0.5) * np.sqrt(2.0) + 1.0) * frame.voxel_mm


def _nearest_frame_reach(frames: Sequence[RibFrame], lps: np.ndarray) -> np.ndarray:
    """(n,) bool: the LPS points that the frame holding their nearest section centre covers."""
    inside = np.zeros(len(lps), bool)
    if not frames or not len(lps):
        return inside
    sizes = [len(f.points_lps) for f in frames]
    first = np.cumsum([0] + sizes)
    owner = np.repeat(np.arange(len(frames)), sizes)
    reach = max(_reach(f) for f in frames)
    distance, nearest = cKDTree(np.concatenate([f.points_lps for f in frames])).query(
        lps, distance_upper_bound=reach, workers=worker_threads(1))
    near = np.flatnonzero(np.isfinite(distance))
    by_frame = owner[nearest[near]]
    for n, frame in enumerate(frames):
        ask = near[by_frame == n]
        ask = ask[distance[ask] <= _reach(frame)]
        if len(ask):
            inside[ask[np.isfinite(frame.lps_to_index(lps[ask], nearest[ask] - first[n])[:, 0])]] = True
    return inside


def fallback_margin(patch_size: Sequence[int]) -> int:
    """Voxels every examined voxel keeps from its fallback window's faces (FALLBACK_CORE_MARGIN)."""
    return int(round(defaults.FALLBACK_CORE_MARGIN * min(int(p) for p in patch_size)))
