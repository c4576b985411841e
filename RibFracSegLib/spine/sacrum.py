"""Where the sacrum begins: the S1 endplate, below the L5/S1 disc, and how sure that is.

The sacrum is the column's lowest bone wider than any vertebral body at the body's own
antero-posterior level: the alae spread left and right of S1's body, and lower down the sacrum
is joined to both ilia across the thin sacroiliac joints. The iliac crests, which reach the L4/L5
disc, are wide bone too, but each lies to one side, apart from the column: nothing wide crosses
the midline at L5. So the sacrum is found as a run of slices where bone at the column's body level
reaches far to both sides of it, gaps no wider than a joint or a foramen bridged, with the column's
bodies continuing above it across a disc; its top is then read on the column's axis, where bone
starts below the L5/S1 disc (the S1 endplate's centre; its anterior edge, the promontory, lies
lower where the endplate tilts forward).

The column is followed down from the spine track's vertebral bodies above, not read off the track
in the pelvis, where a track can slide onto an iliac wing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

from .. import defaults


@dataclass
class SacrumFinding:
    """The sacrum on the working grid: `top` the working slice (fractional: the S1 endplate's
    boundary) or None, `confidence` 0-1, and the evidence behind it."""

    top: Optional[float]
    confidence: float
    run_mm: float = 0.0  # height of the run of wide slices below the top
    width_mm: float = 0.0  # widest left-right reach of the sacral piece at the body's level
    column_above: bool = False  # a vertebral body sits on the column above the disc
    x: float = 0.0  # column (working-grid column, row) at the top
    y: float = 0.0
    notes: list[str] = field(default_factory=list)


def _disk(spacing_yx, diameter_mm: float) -> np.ndarray:
    ry, rx = (max(1, int(round(diameter_mm / 2.0 / s))) for s in spacing_yx)
    yy, xx = np.ogrid[-ry:ry + 1, -rx:rx + 1]
    return (yy / ry) ** 2 + (xx / rx) ** 2 <= 1.0


def _thick(bone_slice: np.ndarray, disk: np.ndarray) -> np.ndarray:
    """Bone thicker than the opening disk, enclosed holes (marrow, canal) filled: ribs and thin
    processes and blades gone, bodies and the sacrum kept."""
    if not bone_slice.any():
        return np.zeros_like(bone_slice)
    return ndimage.binary_opening(ndimage.binary_fill_holes(bone_slice), disk)


def _window(shape, cy: float, cx: float, rows_mm: tuple[float, float], half_mm: float, sy: float, sx: float):
    y0, x0 = max(0, int(cy - rows_mm[0] / sy)), max(0, int(cx - half_mm / sx))
    return slice(y0, min(shape[0], int(cy + rows_mm[1] / sy) + 1)), slice(x0, min(shape[1], int(cx + half_mm / sx) + 1))


def _follow(bone: np.ndarray, track, spacing_zyx, disk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk down the column from the spine track's highest vertebral bodies: per slice the column's
    (x, body-centre y) and whether a body-like piece of thick bone was on it.

    Seeded by the median body centre over the highest SPINE_SACRUM_SEED_MM of the track (the column
    above any pelvis in the CT), each slice takes the piece of thick bone on the column's axis whose
    front lies within SPINE_SACRUM_STEP_MM of the last front and that is at least
    SPINE_SACRUM_BODY_MIN_MM wide (a vertebral body or the sacrum, not the aorta in front of it); the
    last front is the median of the last five taken (an endplate's front juts out). Across a disc
    nothing is taken and the last position kept; lost for longer than SPINE_SACRUM_LOST_MM (a steep
    lordosis on thick slices), the walk starts again from the track's body there. The body's centre
    lies its half-depth (read at the seed) behind the front."""
    nz = bone.shape[0]
    sz, sy, sx = spacing_zyx
    half = max(1, int(round(defaults.SPINE_SACRUM_AXIS_MM / sx)))
    xs, ys, found = np.zeros(nz), np.zeros(nz), np.zeros(nz, bool)
    seen = np.flatnonzero(track.seen)
    seed = seen[seen >= seen[-1] - defaults.SPINE_SACRUM_SEED_MM / sz]
    x, y = float(np.median(track.x[seed])), float(np.median(track.y[seed]))
    fronts, depth = [], []
    head_rows = max(1, int(round(defaults.SPINE_SACRUM_FRONT_MM / sy)))
    lost, lost_after = 0, max(2, int(np.ceil(defaults.SPINE_SACRUM_LOST_MM / sz)))
    for z in range(int(seed[-1]), -1, -1):
        if lost >= lost_after and track.seen[z]:  # lost for longer than a disc: start again from the track
            fronts, x, y, lost = [], float(track.x[z]), float(track.y[z]), 0
        ref = float(np.median(fronts[-5:])) if fronts else y - defaults.SPINE_SACRUM_STEP_MM / 2.0 / sy
        wy, wx = _window(bone.shape[1:], ref, x, (40.0, 70.0), 60.0, sy, sx)
        labels, _ = ndimage.label(_thick(bone[z, wy, wx], disk))
        cx = int(np.clip(round(x) - wx.start, 0, labels.shape[1] - 1))
        strip = labels[:, max(0, cx - half):cx + half + 1]
        best = None
        for lab in np.unique(strip[strip > 0]):
            f = int(np.flatnonzero((strip == lab).any(axis=1))[0]) + wy.start
            if abs(f - ref) * sy > defaults.SPINE_SACRUM_STEP_MM:
                continue
            fl = f - wy.start
            cols = np.flatnonzero((labels[fl:fl + head_rows] == lab).any(axis=0))
            if (cols[-1] - cols[0] + 1) * sx >= defaults.SPINE_SACRUM_BODY_MIN_MM and (
                    best is None or abs(f - ref) < abs(best[0] - ref)):
                best = (f, cols + wx.start)
        if best is None:
            xs[z], ys[z], lost = x, y, lost + 1
            continue
        f, cols = best
        lost = 0
        lateral = cols[np.abs(cols - x) * sx <= defaults.SPINE_SACRUM_WIDTH_MM / 2.0]
        if lateral.size:  # the column shifts sideways slowly (scoliosis); a cut through tilted alae jumps
            x += float(np.clip(0.5 * (lateral[0] + lateral[-1]) - x, -1.0, 1.0))
        if z in seed:
            depth.append(track.y[z] - f)
        fronts.append(f)
        y = f + (float(np.median(depth)) if depth else defaults.SPINE_SACRUM_BODY_MIN_MM / 2.0 / sy)
        xs[z], ys[z], found[z] = x, y, True
    return xs, ys, found


def _reach(bone: np.ndarray, z: int, cy: float, cx: float, spacing_zyx, disk) -> tuple[float, float]:
    """How far (mm) thick bone runs left and right of the column at the body's antero-posterior centre,
    gaps narrower than SPINE_SACRUM_GAP_MM (foramina, the sacroiliac joints) bridged."""
    _, sy, sx = spacing_zyx
    wy, wx = _window(bone.shape[1:], cy, cx, (30.0, 30.0), defaults.SPINE_SACRUM_REACH_MM, sy, sx)
    thick = _thick(bone[z, wy, wx], disk)
    band = max(1, int(round(defaults.SPINE_SACRUM_BAND_MM / sy)))
    c = int(round(cy)) - wy.start
    across = thick[max(0, c - band):c + band + 1].any(axis=0)
    gap = np.ones(max(1, int(round(defaults.SPINE_SACRUM_GAP_MM / sx))), bool)
    runs, _ = ndimage.label(ndimage.binary_closing(across, gap) | across)
    i = int(np.clip(round(cx) - wx.start, 0, len(runs) - 1))
    if not runs[i]:
        return 0.0, 0.0
    cols = np.flatnonzero(runs == runs[i])
    return (i - cols[0]) * sx, (cols[-1] - i) * sx


def find_sacrum(bone: np.ndarray, track, spacing_zyx) -> SacrumFinding:
    """The sacrum in a working-grid bone mask `bone[z, y, x]` (z up) with its spine track."""
    nz = bone.shape[0]
    sz = spacing_zyx[0]
    if nz == 0 or not track.seen.any():
        return SacrumFinding(None, 0.0, notes=["no sacrum: no vertebral body to follow down"])
    xs, ys, found = _follow(bone, track, spacing_zyx, _disk(spacing_zyx[1:], defaults.RIB_SPINE_OPEN_MM))
    left, right = np.zeros(nz), np.zeros(nz)
    disk = _disk(spacing_zyx[1:], defaults.SPINE_SACRUM_OPEN_MM)
    for z in np.flatnonzero(found):
        left[z], right[z] = _reach(bone, z, ys[z], xs[z], spacing_zyx, disk)
    side = defaults.SPINE_SACRUM_WIDTH_MM / 2.0 * defaults.SPINE_SACRUM_SIDE_SHARE
    wide = (left + right > defaults.SPINE_SACRUM_WIDTH_MM) & (np.minimum(left, right) > side)
    bridge = np.ones(max(1, int(np.ceil(defaults.SPINE_SACRUM_BRIDGE_MM / sz))) + 1, bool)
    wide |= ndimage.binary_closing(wide, bridge)  # a foramen's slice, or a tilted CT's, breaks no run
    need = max(1, int(np.ceil(defaults.SPINE_SACRUM_MIN_MM / sz)))
    run_top = run_bottom = None
    z = 0
    while z < nz:  # the tallest run long enough (the sacrum's alae; the higher of equals)
        if wide[z]:
            top = z
            while top + 1 < nz and wide[top + 1]:
                top += 1
            if top - z + 1 >= need and (run_top is None or top - z >= run_top - run_bottom):
                run_top, run_bottom = top, z
            z = top + 1
        else:
            z += 1
    if run_top is None:
        widest = float((left + right).max())
        return SacrumFinding(None, 0.0, width_mm=widest,
                             notes=[f"no sacrum: no bone wider than {defaults.SPINE_SACRUM_WIDTH_MM:.0f} mm crosses "
                                    f"the column over {defaults.SPINE_SACRUM_MIN_MM:.0f} mm (widest {widest:.0f} mm)"])
    return _endplate(bone, xs, ys, found, run_top, run_bottom, float((left + right)[run_bottom:run_top + 1].max()),
                     spacing_zyx)


def _endplate(bone, xs, ys, found, run_top: int, run_bottom: int, width: float, spacing_zyx) -> SacrumFinding:
    """From the wide run's top, up the column's axis to the L5/S1 disc: the endplate is where bone stops."""
    nz = bone.shape[0]
    sz, sy, sx = spacing_zyx
    reach = int(np.ceil(defaults.SPINE_SACRUM_PLATE_MM / sz))
    small = _disk((sy, sx), 2.0 * defaults.SPINE_SACRUM_AXIS_MM)
    ry, rx = small.shape[0] // 2, small.shape[1] // 2

    def filled(z: int) -> float:
        cy, cx = int(round(ys[z])), int(round(xs[z]))
        win = bone[z, max(0, cy - ry):cy + ry + 1, max(0, cx - rx):cx + rx + 1]
        m = small[:win.shape[0], :win.shape[1]]
        return float(win[m].mean()) if m.any() else 0.0

    top, disc = float(run_top) + 0.5, None
    for z in range(max(0, run_top - reach), min(nz, run_top + reach + 1)):
        if filled(z) < 0.5 and z > run_bottom and all(filled(k) >= 0.5 for k in range(max(0, z - 2), z)):
            disc = z
            break
    notes = []
    if disc is not None:
        top = disc - 0.5
    else:
        notes.append("no L5/S1 disc seen on the column's axis: the sacrum's top is where it widens")
    above = range(int(top) + 1, min(nz, int(top) + 1 + int(np.ceil(defaults.SPINE_SACRUM_ABOVE_MM / sz))))
    column_above = any(found[z] and filled(z) >= 0.5 for z in above)
    run_mm = (run_top - run_bottom + 1) * sz
    confidence = min(1.0, run_mm / defaults.SPINE_SACRUM_SURE_MM) * (1.0 if column_above else 0.5)
    confidence *= 1.0 if disc is not None else 0.8
    if run_bottom == 0:
        notes.append("the sacrum runs out of the CT's lower edge")
    if not column_above:
        notes.append("no vertebral body above the sacrum's top on the column")
    zt = int(np.clip(round(top), 0, nz - 1))
    return SacrumFinding(top, round(confidence, 3), run_mm, float(width), column_above, float(xs[zt]), float(ys[zt]),
                         notes)


def sacrum_top(bone: np.ndarray, track, spacing_zyx) -> Optional[float]:
    """Working slice of the S1 endplate (fractional), or None when no sacrum is found surely enough
    (SPINE_SACRUM_MIN_CONFIDENCE): spine.levels' anchor for the lowest lumbar body."""
    found = find_sacrum(bone, track, spacing_zyx)
    return found.top if found.top is not None and found.confidence >= defaults.SPINE_SACRUM_MIN_CONFIDENCE else None
