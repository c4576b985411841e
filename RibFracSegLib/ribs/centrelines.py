"""Rib centrelines from a rib label map alone, ordered from the rib head to its anterior end.

For a label map without centrelines (TotalSegmentator's, a manual one): in each rib's largest
26-connected piece, the two voxels farthest apart along the bone (geodesic distance, Dijkstra on the
voxel graph with mm edge lengths) are its two ends; voxels binned by geodesic distance from the head
give cross-sections whose centroids, smoothed and resampled every mm, are the centreline. Centroids of
cross-sections stay centred in the bone where a thinned skeleton would wander to a corner, and the
cost is one Dijkstra pass per rib (well under a second) rather than a 3-D thinning.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, sparse
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from .. import defaults
from ..geometry import index_to_lps_affine
from .labels import Rib, RibLabels, rib_from_label_value

_OFFSETS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
                     if (a, b, c) > (0, 0, 0)])  # 13 half-neighbourhood offsets (k, j, i)


def _graph(points_mm: np.ndarray, kji: np.ndarray, bridges: np.ndarray) -> sparse.csr_matrix:
    """The voxel set's 26-neighbour graph with mm edge lengths, plus `bridges` (pairs of voxel rows
    joined straight across a gap)."""
    lo = kji.min(axis=0)
    shape = kji.max(axis=0) - lo + 3
    lookup = np.full(tuple(shape), -1, np.int64)
    local = kji - lo + 1
    lookup[tuple(local.T)] = np.arange(len(kji))
    rows, cols = [bridges[:, 0]], [bridges[:, 1]]
    for off in _OFFSETS:
        nb = lookup[tuple((local + off).T)]
        ok = nb >= 0
        rows.append(np.flatnonzero(ok))
        cols.append(nb[ok])
    r, c = np.concatenate(rows), np.concatenate(cols)
    w = np.linalg.norm(points_mm[r] - points_mm[c], axis=1)
    return sparse.coo_matrix((w, (r, c)), shape=(len(kji),) * 2).tocsr()


def _pieces(mask: np.ndarray, spacing_zyx: np.ndarray, join_mm: float, min_voxels: int
            ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The largest 26-connected piece of `mask`, and with `join_mm` every piece of at least `min_voxels`
    chained onto it across a gap of at most `join_mm` (a break the grown rib bridged: without it a
    break before mid-rib left the head's part out of the centreline). Returns the pieces' mask and each
    join as (voxel, voxel) [k, j, i] at the gap's narrowest."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n <= 1:
        return mask, []
    sizes = np.bincount(lab.ravel())[1:]
    joined = {int(np.argmax(sizes)) + 1}
    if join_mm <= 0:
        return lab == next(iter(joined)), []
    voxels = {i: np.argwhere(lab == i) for i in range(1, n + 1) if sizes[i - 1] >= min_voxels or i in joined}
    joins: list[tuple[np.ndarray, np.ndarray]] = []
    grew = True
    while grew:
        grew = False
        have = np.concatenate([voxels[i] for i in sorted(joined)])
        tree = cKDTree(have * spacing_zyx)
        for i in sorted(set(voxels) - joined):
            distance, nearest = tree.query(voxels[i] * spacing_zyx, distance_upper_bound=join_mm)
            if np.isfinite(distance).any():
                k = int(np.argmin(distance))
                joins.append((voxels[i][k], have[nearest[k]]))
                joined.add(i)
                grew = True
                break  # the tree grows by this piece before the next is asked
    return np.isin(lab, sorted(joined)), joins


def centreline_from_mask(mask_kji: np.ndarray, image: sitk.Image, midline_x_lps: float,
                         step_mm: float = defaults.CENTRELINE_STEP_MM, join_mm: float = 0.0,
                         join_min_mm3: float = 0.0) -> np.ndarray:
    """(n, 3) LPS centreline of one rib's mask (array in the image's [k, j, i] order), head first.

    The head is the end lying more posterior and nearer the midline (`midline_x_lps`): posterior
    beats lateral, so rib 1 (whose anterior end is also near the midline) and the floating ribs 11-12
    (whose tips are posterior too, but lateral) are both oriented correctly. The mask's largest piece
    counts, with `join_mm` also pieces of at least `join_min_mm3` across gaps up to that (`_pieces`)."""
    spacing_zyx = np.array(image.GetSpacing(), float)[::-1]
    piece, joins = _pieces(mask_kji, spacing_zyx, join_mm, int(np.ceil(join_min_mm3 / float(np.prod(spacing_zyx)))))
    kji = np.argwhere(piece)
    if len(kji) < 2:
        return np.empty((0, 3))
    m, origin = index_to_lps_affine(image)
    pts = origin + kji[:, ::-1] @ m.T
    row = {tuple(v): i for i, v in enumerate(kji)} if joins else {}
    bridges = np.array([(row[tuple(a)], row[tuple(b)]) for a, b in joins], np.int64).reshape(-1, 2)
    graph = _graph(pts, kji, bridges)
    far_a = int(np.argmax(dijkstra(graph, directed=False, indices=0)))
    dist_a = dijkstra(graph, directed=False, indices=far_a)
    far_b = int(np.argmax(np.where(np.isfinite(dist_a), dist_a, -1)))

    def head_score(p):
        return p[1] - 0.5 * abs(p[0] - midline_x_lps)

    if head_score(pts[far_b]) > head_score(pts[far_a]):
        dist = dijkstra(graph, directed=False, indices=far_b)
    else:
        dist = dist_a
    bin_mm = max(step_mm, float(np.max(image.GetSpacing())))
    bins = np.floor(dist / bin_mm).astype(int)
    counts = np.bincount(bins)
    keep = counts > 0
    centroids = np.stack([np.bincount(bins, weights=pts[:, a])[keep] / counts[keep] for a in range(3)], axis=1)
    if len(centroids) < 2:
        return centroids
    if len(centroids) >= 5:
        centroids = ndimage.gaussian_filter1d(centroids, 1.0, axis=0, mode="nearest")
    return resample_polyline(centroids, step_mm)


def resample_polyline(points: np.ndarray, step_mm: float) -> np.ndarray:
    """Points every `step_mm` of arc along a polyline (its ends kept)."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    if arc[-1] <= 0:
        return points[:1]
    at = np.linspace(0.0, arc[-1], max(2, int(np.ceil(arc[-1] / step_mm)) + 1))
    return np.stack([np.interp(at, arc, points[:, a]) for a in range(3)], axis=1)


def ribs_from_label_map(labels: sitk.Image) -> RibLabels:
    """A `RibLabels` (our convention) with a centreline per rib, computed from the label map alone."""
    arr = sitk.GetArrayViewFromImage(labels)
    values = [int(v) for v in np.unique(arr) if v != 0]
    m, origin = index_to_lps_affine(labels)
    all_kji = np.argwhere(arr > 0)
    midline_x = float(np.median(origin[0] + all_kji[:, ::-1] @ m[0])) if len(all_kji) else 0.0
    ribs = []
    for value in values:
        side, number = rib_from_label_value(value)
        mask = arr == value
        box = ndimage.find_objects(mask.astype(np.uint8))[0]
        sub = sitk.Image(1, 1, 1, sitk.sitkUInt8)  # geometry of the box: shift the origin to its corner
        sub.SetSpacing(labels.GetSpacing())
        sub.SetDirection(labels.GetDirection())
        sub.SetOrigin(labels.TransformIndexToPhysicalPoint([int(s.start) for s in box[::-1]]))
        line = centreline_from_mask(mask[box], sub, midline_x)
        ribs.append(Rib(side, number, line, voxel_count=int(mask.sum())))
    return RibLabels(labels, ribs, numbering="given", notes=["centrelines from the label map (geodesic bins)"])
