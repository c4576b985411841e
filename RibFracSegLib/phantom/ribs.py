"""Sweep each rib as a flattened elliptic tube along its centreline, with its fractures.

For every voxel near a rib we keep the nearest centreline sample in the tube's own frame: the
normalised radius (<= 1 is inside the bone), the arc position along the rib, and the offset along
the binormal. Breaks, offsets, bulges and the annotated fracture regions are then simple tests on
those per-voxel coordinates, so a fracture's truth label and its appearance come from one source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from RibFracSegLib.phantom.anatomy import RibPath
from RibFracSegLib.phantom.fractures import FracturePlan
from RibFracSegLib.phantom.tissue import Tissue

LABEL_RADIUS = 1.6  # annotated region reaches 1.6x the bone's semi-axes (haematoma, callus margin)
_NEIGHBOURS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
                        if (a, b, c) != (0, 0, 0)])


@dataclass
class RibRaster:
    box: tuple[slice, slice, slice]  # (z, y, x) index slices into the full grid
    tissue: np.ndarray  # uint8 local, 0 where the rib is absent
    fracture: np.ndarray  # uint16 local instance labels


def _frames(points: np.ndarray, y_center: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent, outward normal (in the axial plane) and binormal at each sample."""
    t = np.gradient(points, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    n = np.cross(t, [0.0, 0.0, 1.0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    radial = points[:, :2] - [0.0, y_center]
    n *= np.sign(np.sum(n[:, :2] * radial, axis=1, keepdims=True) + 1e-9)
    b = np.cross(t, n)
    return t, n, b


def sweep_rib(rib: RibPath, plans: list[FracturePlan], axes: tuple[np.ndarray, np.ndarray, np.ndarray],
              y_center: float, scale: float) -> RibRaster | None:
    """Rasterise one rib (and its fractures) on the grid whose 1-D coordinates are axes = (x, y, z)."""
    gx, gy, gz = axes
    spacing = np.array([abs(gx[1] - gx[0]), abs(gy[1] - gy[0]), abs(gz[1] - gz[0])])
    step = float(np.clip(0.5 * spacing.min(), 0.25, 0.6))
    stride = max(1, int(round(step / 0.25)))
    pts = rib.points[::stride].copy()
    arc = rib.arc_mm[::stride]
    a = rib.half_thickness[::stride].copy()
    b = rib.half_height[::stride].copy()
    tan, nor, bin_ = _frames(pts, y_center)
    for plan in plans:  # displacements and bulges move the samples before the sweep
        off = plan.offset_nb_mm[0] * nor + plan.offset_nb_mm[1] * bin_
        if plan.kind == 1:
            after = arc > plan.breaks_mm[0]
            decay = np.exp(-(arc - plan.breaks_mm[0]) / 40.0)[:, None]
            pts[after] += (off * decay)[after]
        elif plan.kind == 4:
            mid = (arc > plan.breaks_mm[0]) & (arc < plan.breaks_mm[1])
            pts[mid] += off[mid]
        elif plan.kind == 3:
            g = np.exp(-(((arc - plan.breaks_mm[0]) / 3.0) ** 2))
            a += 0.5 * plan.bump_mm * g
            pts -= nor * (0.5 * plan.bump_mm * g)[:, None]
    reach = LABEL_RADIUS * np.maximum(a, b) + spacing.max()
    lo = (pts - reach[:, None]).min(axis=0)
    hi = (pts + reach[:, None]).max(axis=0)
    ix = [np.searchsorted(ax, [l, h]) for ax, l, h in zip((gx, gy, gz), lo, hi)]
    if any(i1 <= i0 for i0, i1 in ix):
        return None
    box = (slice(*ix[2]), slice(*ix[1]), slice(*ix[0]))
    lx, ly, lz = gx[box[2]], gy[box[1]], gz[box[0]]
    shape = (len(lz), len(ly), len(lx))
    best = np.full(shape, np.inf, np.float32)
    s_arc = np.zeros(shape, np.float32)
    v_off = np.zeros(shape, np.float32)
    owner = np.zeros(shape, np.int32)
    half_slab = 0.75 * step
    for i in range(len(pts)):
        p, r = pts[i], reach[i]
        sx = slice(*np.searchsorted(lx, [p[0] - r, p[0] + r]))
        sy = slice(*np.searchsorted(ly, [p[1] - r, p[1] + r]))
        sz = slice(*np.searchsorted(lz, [p[2] - r, p[2] + r]))
        dx = (lx[sx] - p[0])[None, None, :]
        dy = (ly[sy] - p[1])[None, :, None]
        dz = (lz[sz] - p[2])[:, None, None]
        w = dx * tan[i, 0] + dy * tan[i, 1] + dz * tan[i, 2]
        u = dx * nor[i, 0] + dy * nor[i, 1] + dz * nor[i, 2]
        v = dx * bin_[i, 0] + dy * bin_[i, 1] + dz * bin_[i, 2]
        m = np.sqrt((u / a[i]) ** 2 + (v / b[i]) ** 2)
        better = (np.abs(w) <= half_slab) & (m < best[sz, sy, sx])
        best[sz, sy, sx][better] = m[better]
        s_arc[sz, sy, sx][better] = (arc[i] + w)[better]
        v_off[sz, sy, sx][better] = v[better]
        owner[sz, sy, sx][better] = i
    inside = best <= 1.0
    cortex_mm = 1.0 * scale
    core = best < 1.0 - cortex_mm / np.minimum(a, b)[owner]
    tissue = np.zeros(shape, np.uint8)
    tissue[inside] = Tissue.RIB_CORTEX
    tissue[inside & core] = Tissue.RIB_MARROW
    tissue[inside & (s_arc > rib.bony_length_mm)] = Tissue.CARTILAGE
    fracture = np.zeros(shape, np.uint16)
    for plan in plans:
        for t_break in plan.breaks_mm:
            along = s_arc + plan.obliquity * v_off - t_break
            if plan.kind == 3:
                tissue[inside & (np.abs(s_arc - t_break) < 0.8)] = Tissue.RIB_CORTEX
            else:
                tissue[inside & (np.abs(along) < plan.gap_mm / 2)] = Tissue.SOFT
            fracture[(best <= LABEL_RADIUS) & (np.abs(s_arc - t_break) <= plan.extent_mm)] = plan.label_id
    return RibRaster(box, tissue, fracture)


def separate_from_bone(raster: RibRaster, other_bone: np.ndarray) -> int:
    """Turn rib-bone voxels that touch other bone (26-neighbours) into soft tissue, so every rib stays
    its own connected bone as in a real CT's joints. `other_bone` is the bool bone mask in the box.
    Returns how many voxels were changed."""
    rib_bone = np.isin(raster.tissue, (Tissue.RIB_CORTEX, Tissue.RIB_MARROW))
    coords = np.argwhere(rib_bone)
    if not len(coords):
        return 0
    shape = np.array(other_bone.shape)
    touch = np.zeros(len(coords), bool)
    for off in _NEIGHBOURS:
        nb = np.clip(coords + off, 0, shape - 1)
        touch |= other_bone[nb[:, 0], nb[:, 1], nb[:, 2]]
    hit = coords[touch]
    raster.tissue[hit[:, 0], hit[:, 1], hit[:, 2]] = Tissue.SOFT
    return int(touch.sum())
