"""Paint one axial slice of a phantom: outline, muscles, organs, spine, sternum and pelvis.

Everything except the ribs is drawn slice by slice on the canonical (axis-aligned) grid, because
each structure is an ellipse or band whose size is a function of z. Each primitive touches only
its bounding window, which keeps a 512x512x300 phantom fast. Ribs are swept in 3D by `ribs`.
"""

from __future__ import annotations

import numpy as np

from RibFracSegLib.phantom.anatomy import Anatomy
from RibFracSegLib.phantom.pelvis import paint_pelvis
from RibFracSegLib.phantom.tissue import Tissue as T
from RibFracSegLib.phantom.variation import paint_extras


class SliceCanvas:
    """A tissue slice and a vertebral-level slice with coordinates in anatomy mm."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x.astype(np.float32), y.astype(np.float32)
        self.tissue = np.zeros((len(y), len(x)), np.uint8)
        self.level = np.zeros((len(y), len(x)), np.uint8)

    def window(self, cx: float, cy: float, ax: float, ay: float):
        """Index slices and local coordinates of the box [cx±ax] x [cy±ay] (None if empty)."""
        x, y = self.x, self.y
        sx = slice(*np.searchsorted(x, [cx - ax, cx + ax], side="left"))
        sy = slice(*np.searchsorted(y, [cy - ay, cy + ay], side="left"))
        if sx.stop <= sx.start or sy.stop <= sy.start:
            return None
        return sy, sx, x[None, sx] - cx, y[sy, None] - cy

    def ellipse(self, value: int, cx: float, cy: float, ax: float, ay: float, where=None, level: int = 0,
                region=None, power: float = 2.0) -> None:
        """Paint the filled ellipse (a superellipse for power > 2); `where(X, Y)` may restrict it (local
        coordinates); `region` limits painting to voxels whose current tissue is in that tuple."""
        if ax <= 0 or ay <= 0:
            return
        win = self.window(cx, cy, ax, ay)
        if win is None:
            return
        sy, sx, X, Y = win
        if power == 2.0:
            mask = (X / ax) ** 2 + (Y / ay) ** 2 <= 1.0
        else:
            mask = np.abs(X / ax) ** power + np.abs(Y / ay) ** power <= 1.0
        if where is not None:
            mask &= where(X, Y)
        if region is not None:
            mask &= np.isin(self.tissue[sy, sx], region)
        self.tissue[sy, sx][mask] = value
        if level:
            self.level[sy, sx][mask] = level

    def ellipsoid(self, value: int, z: float, center, semi, where=None, region=None) -> None:
        """Paint the section at height z of the ellipsoid at `center` (x, y, z) with semi-axes `semi`."""
        dz = (z - center[2]) / semi[2]
        if abs(dz) < 1:
            k = np.sqrt(1 - dz * dz)
            self.ellipse(value, center[0], center[1], semi[0] * k, semi[1] * k, where=where, region=region)

    def shelled_ellipse(self, cx, cy, ax, ay, shell_mm, level=0, core=T.CANCELLOUS, shell=T.CORTICAL,
                        where=None) -> None:
        self.ellipse(shell, cx, cy, ax, ay, where=where, level=level)
        self.ellipse(core, cx, cy, ax - shell_mm, ay - shell_mm, where=where, level=level)


OUTLINE_POWER = 2.6  # a supine trunk is boxier than an ellipse: flat back, square flanks


def paint_slice(canvas: SliceCanvas, z: float, anat: Anatomy, texture) -> None:
    """Paint everything but the ribs at height z (anatomy mm). `texture(X, Y, z, kind)` is a smooth
    random field (kind "bowel" or "vessel") in standard-deviation units."""
    bx, by = (float(v) for v in anat.outline(z))
    fat, muscle = float(anat.fat(z)), float(anat.muscle(z))
    cx, cy, yc = (float(v[()]) for v in anat.cavity(z))
    canvas.ellipse(T.SKIN, 0, 0, bx, by, power=OUTLINE_POWER)
    canvas.ellipse(T.FAT, 0, 0, bx - 2, by - 2, power=OUTLINE_POWER)
    canvas.ellipse(T.MUSCLE, 0, 0, bx - fat, by - fat, power=OUTLINE_POWER)
    y_spine = float(anat.spine_y(z))
    if cx > 1:
        _paint_cavity(canvas, z, anat, cx, cy, yc, y_spine, texture)
    _paint_shoulder_girdle(canvas, z, anat, cx, cy, yc)
    _paint_spine(canvas, z, anat, y_spine)
    _paint_sternum(canvas, z, anat, cy, yc)
    paint_pelvis(canvas, z, anat)
    if anat.variation is not None:
        paint_extras(canvas, z, anat, bx, by)


def _dome(anat: Anatomy, X, Y, cy_ref: float):
    """Height of the diaphragm at (X, Y): two domes, the right one higher."""
    s = anat.scale
    right = anat.z_diaphragm - 45 * s * (((X + 55 * s) / (80 * s)) ** 2 + (Y / cy_ref) ** 2)
    left = anat.z_diaphragm - 15 * s - 45 * s * (((X - 55 * s) / (80 * s)) ** 2 + (Y / cy_ref) ** 2)
    return np.maximum(right, left)


def _paint_cavity(c: SliceCanvas, z, anat: Anatomy, cx, cy, yc, y_spine, texture) -> None:
    s = anat.scale
    cy_ref = float(anat.cavity(anat.z_diaphragm)[1])
    thorax = lambda X, Y: z > _dome(anat, X, Y + yc, cy_ref)  # noqa: E731
    abdomen = lambda X, Y: z <= _dome(anat, X, Y + yc, cy_ref)  # noqa: E731
    c.ellipse(T.LUNG, 0, yc, cx, cy, where=thorax)
    _paint_gutters(c, z, anat, cx, cy, yc, y_spine, thorax)
    c.ellipse(T.VISCERAL_FAT, 0, yc, cx, cy, where=abdomen)
    vt = anat.by_name
    hd = vt["T8"].half_depth
    # Bowel loops and gas, from a smooth random field, in the abdominal cavity below the liver.
    if z < anat.z_diaphragm - 40 * s:
        win = c.window(0, yc, cx, cy)
        if win is not None:
            sy, sx, X, Y = win
            field = texture(X + 0.0, Y + yc, z, "bowel")
            sub = c.tissue[sy, sx]
            visc = sub == T.VISCERAL_FAT
            sub[visc & (field > 0.15)] = T.BOWEL
            sub[visc & (field > 0.62)] = T.GAS
    # Lung vessels: small soft-tissue blobs where a fine random field peaks.
    if z > anat.z_diaphragm - 60 * s:
        win = c.window(0, yc, cx, cy)
        if win is not None:
            sy, sx, X, Y = win
            sub = c.tissue[sy, sx]
            lung = sub == T.LUNG
            if lung.any():
                sub[lung & (texture(X + 0.0, Y + yc, z, "vessel") > 1.7)] = T.SOFT
    # Mediastinum, heart, airway (thorax only, where lungs are).
    if z > anat.z_diaphragm - 30 * s and z < anat.z_apex:
        front_to_spine = lambda X, Y: Y < y_spine - yc  # noqa: E731
        c.ellipse(T.MEDIASTINAL_FAT, 8 * s, yc, 30 * s, cy, where=front_to_spine, region=(T.LUNG,))
        zh = vt["T8"].z_center
        dz = (z - zh) / (60 * s)
        if abs(dz) < 1:
            k = np.sqrt(1 - dz * dz)
            c.ellipse(T.SOFT, 18 * s, yc - 22 * s, 58 * s * k, 48 * s * k, region=(T.LUNG, T.MEDIASTINAL_FAT))
            c.ellipse(T.BLOOD, 18 * s, yc - 22 * s, 46 * s * k, 36 * s * k)
        if z > vt["T5"].z_center:
            ty = y_spine - hd - 16 * s
            c.ellipse(T.SOFT, 0, ty, 10 * s, 10 * s)
            c.ellipse(T.GAS, 0, ty, 7.5 * s, 7.5 * s)
    # Great vessels alongside the spine.
    if vt["T4"].z_center > z > vt["L4"].z_center:
        hd_z = 10 * s + 8 * s * np.clip((vt["T1"].z_top - z) / 450, 0, 1)
        c.ellipse(T.BLOOD, 18 * s, y_spine - hd_z - 13 * s, 11 * s, 11 * s)
        if z < anat.z_diaphragm:
            c.ellipse(T.BLOOD, -22 * s, y_spine - hd_z - 10 * s, 11 * s, 10 * s)
    # Upper-abdominal organs under the domes.
    c.ellipsoid(T.LIVER, z, (-60 * s, yc - 5 * s, anat.z_diaphragm - 70 * s), (85 * s, 80 * s, 92 * s),
               where=abdomen, region=(T.VISCERAL_FAT, T.BOWEL, T.GAS))
    c.ellipsoid(T.SPLEEN, z, (78 * s, yc + 40 * s, anat.z_diaphragm - 70 * s), (30 * s, 45 * s, 55 * s),
               where=abdomen)
    c.ellipsoid(T.SOFT, z, (45 * s, yc - 35 * s, anat.z_diaphragm - 60 * s), (42 * s, 32 * s, 45 * s),
               where=abdomen, region=(T.VISCERAL_FAT, T.BOWEL, T.GAS))
    zl1 = vt["L1"].z_center
    for side in (-1, 1):
        c.ellipsoid(T.KIDNEY, z, (side * 68 * s, y_spine, zl1 - (12 * s if side < 0 else 0)),
                   (27 * s, 24 * s, 55 * s))
        # Psoas: grows from T12 down to L5 beside the bodies.
        if vt["T12"].z_bottom > z > anat.z_sacrum_top - 20 * s:
            frac = (vt["T12"].z_bottom - z) / (vt["T12"].z_bottom - anat.z_sacrum_top)
            r = (5 + 17 * frac) * s
            hw = float(np.interp(z, [vb.z_center for vb in anat.vertebrae[::-1]],
                                 [vb.half_width for vb in anat.vertebrae[::-1]]))
            c.ellipse(T.MUSCLE, side * (hw + 2 * s + r), y_spine + 4 * s, r, r * 1.1)
    c.ellipsoid(T.BLADDER, z, (0, yc - 35 * s, anat.z_sacrum_bottom + 5 * s), (45 * s, 40 * s, 40 * s))


def _paint_gutters(c: SliceCanvas, z, anat: Anatomy, cx, cy, yc, y_spine, thorax) -> None:
    """Lung in the paravertebral gutters, up to the posterior ribs' inner surface from the rib heads to
    the angles: the cavity's ellipse alone leaves the spine-anchored rib necks 10-20 mm off the lung
    (real chests here: 4-7 mm from a rib's centre), where the rib step takes bone for a scapula's."""
    s = anat.scale
    thoracic = [vb for vb in anat.vertebrae if vb.name.startswith("T")][::-1]  # bottom to top
    if not thoracic[0].z_bottom < z < anat.z_apex or cx <= 1:
        return
    heights = [vb.z_center for vb in thoracic]
    hw = float(np.interp(z, heights, [vb.half_width for vb in thoracic]))
    hd = float(np.interp(z, heights, [vb.half_depth for vb in thoracic]))
    inner, tubercle, angle = hw + 4 * s, hw + 26 * s, hw + 45 * s  # lateral of the column's centre
    if angle >= cx:
        return
    y_angle = yc + cy * np.sqrt(1 - (angle / cx) ** 2)  # where the ellipse meets the rib's angle
    back = [y_spine + 0.3 * hd - 5 * s, y_spine + hd + 11 * s, y_angle]  # rib head, tubercle (ribs: 3 mm half-thick)
    front = y_spine - hd
    x0 = anat.spine_x(z)
    for side in (-1.0, 1.0):
        wx, wy = x0 + side * 0.5 * (inner + angle), 0.5 * (front + max(back))
        win = c.window(wx, wy, 0.5 * (angle - inner), 0.5 * (max(back) - front))
        if win is None:
            continue
        sy, sx, X, Y = win
        lateral, ya = side * (X + wx - x0), Y + wy
        mask = (lateral >= inner) & (ya <= np.interp(lateral, [inner, tubercle, angle], back)) & \
            thorax(X + wx, ya - yc) & (c.tissue[sy, sx] == T.MUSCLE)
        c.tissue[sy, sx][mask] = T.LUNG


def _paint_spine(c: SliceCanvas, z, anat: Anatomy, y_spine) -> None:
    s, x0 = anat.scale, anat.spine_x(z)
    vb, part = anat.vertebra_at(z)
    if vb is None:
        return
    lumbar = vb.name.startswith("L")
    rc = (10 if lumbar else 8) * s
    y_canal = y_spine + vb.half_depth + 2 * s + rc
    if z > anat.z_sacrum_top:
        c.ellipse(T.CORD, x0, y_canal, rc, rc)
    h = vb.z_top - vb.z_bottom
    rel = (vb.z_top - z) / h  # 0 at the top, 1 at the bottom of the body, > 1 in the disc below
    arch = ARCH_VARIED if anat.variation is not None else ARCH
    if part == "disc":
        c.ellipse(T.DISC, x0, y_spine, vb.half_width, vb.half_depth)
        if anat.variation is not None:  # the arch hangs over the disc below
            _paint_arch(c, vb, rel, arch, x0, y_spine, y_canal, rc, s, lumbar)
        return
    lid = vb.label_id
    endplate = min(vb.z_top - z, z - vb.z_bottom) < 1.2 * s
    if endplate:
        c.ellipse(T.CORTICAL, x0, y_spine, vb.half_width, vb.half_depth, level=lid)
    else:
        c.shelled_ellipse(x0, y_spine, vb.half_width, vb.half_depth, 1.5 * s, level=lid)
    _paint_arch(c, vb, rel, arch, x0, y_spine, y_canal, rc, s, lumbar)


# Heights (share of the body's height from its top) spanned by the parts of a vertebral arch. Regular
# phantoms: level with the body. Varied: as in real spines, pedicles leave the body's upper half and
# the laminae, inferior articular and spinous processes hang over the disc below, so a frontal MIP
# shows a continuous column rather than blocks separated by discs.
ARCH = {"lamina": (0.15, 0.85), "facet": (0.15, 0.85), "spinous": (0.3, 0.9), "transverse": (0.45, 0.85)}
ARCH_VARIED = {"lamina": (0.3, 1.2), "facet": (0.1, 1.4), "spinous": (0.45, 1.15), "transverse": (0.25, 0.7)}


def _paint_arch(c: SliceCanvas, vb, rel: float, arch: dict, x0, y_spine, y_canal, rc, s, lumbar) -> None:
    lid = vb.label_id
    within = lambda part: arch[part][0] < rel < arch[part][1]  # noqa: E731
    if within("lamina"):  # lamina round the canal
        c.ellipse(T.CORTICAL, x0, y_canal, rc + 6 * s, rc + 6 * s, level=lid,
                  where=lambda X, Y: (Y > -2 * s) & ((X / (rc + 1 * s)) ** 2 + (Y / (rc + 1 * s)) ** 2 > 1))
    if within("facet"):  # pedicles and articular processes
        for side in (-1, 1):
            c.ellipse(T.CORTICAL, x0 + side * (rc + 2.5 * s), y_spine + vb.half_depth + rc / 2 + 1 * s,
                      3.5 * s, rc / 2 + 2 * s, level=lid)
    if within("spinous"):  # spinous process
        length = 20 * s
        c.ellipse(T.CORTICAL, x0, y_canal + rc + 4 * s + length / 2, 3.5 * s, length / 2, level=lid)
    if within("transverse"):  # transverse processes, below the rib heads
        reach = vb.half_width + (25 if lumbar else 14) * s
        for side in (-1, 1):
            c.ellipse(T.CORTICAL, x0 + side * (rc + reach) / 2, y_canal - 2 * s, (reach - rc) / 2, 4.5 * s, level=lid)


def _paint_shoulder_girdle(c: SliceCanvas, z, anat: Anatomy, cx, cy, yc) -> None:
    """Scapulae behind the upper ribs and clavicles above them: bone near ribs that is not rib."""
    s, v = anat.scale, anat.by_name
    top, bottom = v["T2"].z_top, v["T7"].z_bottom
    if bottom < z < top and cx > 1:
        frac = (top - z) / (top - bottom)  # the blade narrows to its inferior angle
        t0, t1 = 0.25 * np.pi, (0.47 - 0.17 * frac) * np.pi
        rx, ry = cx + 23 * s, cy + 23 * s
        for side in (-1, 1):
            def blade(X, Y, side=side):
                r = np.sqrt((X / rx) ** 2 + ((Y - yc) / ry) ** 2)
                theta = np.arctan2(X * side, Y - yc)
                return (np.abs(r - 1) * ry < 2.5 * s) & (theta > t0) & (theta < t1)
            c.ellipse(T.CORTICAL, 0, yc, rx + 3 * s, ry + 3 * s, where=blade)
    z_clav = v["T1"].z_top + 12 * s
    if abs(z - z_clav) < 16 * s:
        bx = float(anat.outline(z)[0])
        y_front = yc - float(anat.cavity(v["T2"].z_center)[1][()]) - 18 * s
        for side in (-1, 1):
            def clavicle(X, Y, side=side, core=False):
                xa = X * side
                yc_x = y_front + 0.25 * (xa - 25 * s)  # runs back as it goes out to the shoulder
                zc_x = z_clav + 0.08 * (xa - 25 * s)
                r = (4.0 if core else 5.5) * s
                return (xa > 22 * s) & (xa < 0.85 * bx) & ((Y - yc_x) ** 2 + (z - zc_x) ** 2 < r * r)
            c.ellipse(T.CORTICAL, 0, 0, bx, bx, where=clavicle)
            c.ellipse(T.CANCELLOUS, 0, 0, bx, bx, where=lambda X, Y, f=clavicle: f(X, Y, core=True))


def _paint_sternum(c: SliceCanvas, z, anat: Anatomy, cy, yc) -> None:
    s = anat.scale
    r1, r7 = anat.ribs[0], anat.ribs[6]
    z_top, z_bottom = r1.points[-1, 2] + 12 * s, r7.points[-1, 2] - 8 * s
    if not (z_bottom < z < z_top):
        return
    half_w = (24 if z > r1.points[-1, 2] - 25 * s else 14) * s
    y0 = yc - cy - 6 * s
    c.shelled_ellipse(0, y0, half_w, 6 * s, 1.2 * s,
                      where=lambda X, Y: np.abs(X) < half_w)
