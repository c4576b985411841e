"""The pelvis of a phantom: a tilted, curved sacrum of five fused segments with its foramina, the
L5/S1 disc, the iliac wings with the sacroiliac joints, the acetabula, pubic and ischial rami.

Why this much: the sacrum names the lumbar count when no rib is in view, and a finder tested on a
box-shaped sacrum learns nothing about real pelves, where the iliac crests (wide bone, lateral) sit
beside L5 and the sacrum between the wings is joined to them across a thin joint gap. Shapes follow
adult anatomy (../shared/reference): the S1 endplate faces forward and up (its anterior edge, the
promontory, lowest), the sacrum runs down and back and curls forward to the coccyx; the crests reach
the L4/L5 disc. Everything is a function of the anatomy's layout alone (no random draws), so the
phantoms above the pelvis are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from RibFracSegLib.defaults import VERTEBRA_IDS
from RibFracSegLib.phantom.tissue import Tissue as T

SACRUM_LENGTH = 105.0  # mm along the curve, S1 endplate to the apex, at body_scale 1
COCCYX_LENGTH = 30.0
SACRAL_TILT_DEG = 20.0  # S1 endplate against the L5 body's lower plate (regular phantoms)
_THETA_F = (0.0, 0.22, 0.45, 1.0)  # sacral axis angle from the vertical (toward posterior) along it...
_THETA_DEG = (None, 40.0, 38.0, -10.0)  # ... starting at the endplate's tilt, curling forward at the apex
_FORAMEN_R = (5.5, 5.0, 4.2, 3.5)  # anterior sacral foramina S1-S4, radius mm
SI_GAP_MM = 2.5  # sacroiliac joint space
# Iliac blade per height above the S1 endplate: posterior end (x, y), Bezier control, anterior end,
# in mm relative to (midline, S1 centre); the posterior end follows the sacrum where the joint is.
_ILIUM_H = (60.0, 45.0, 15.0, 0.0, -25.0, -50.0, -65.0)
_ILIUM_P0 = ((48, 45), (48, 45), (48, 40), (None, 34), (None, 26), (None, 20), (68, -5))
_ILIUM_P1 = ((126, 28), (126, 28), (124, 22), (118, 15), (100, 5), (86, 0), (80, -18))
_ILIUM_P2 = ((112, -70), (112, -70), (108, -70), (100, -66), (90, -58), (82, -48), (82, -38))


@dataclass
class Sacrum:
    """Centreline of the sacrum (and coccyx) in the sagittal plane, sampled every 0.5 mm of arc t
    (t < 0: straight on above the endplate, where the L5/S1 disc lies)."""

    t: np.ndarray
    y: np.ndarray
    z: np.ndarray
    theta: np.ndarray  # axis angle from downward vertical toward posterior (radians)
    length: float
    x0: float
    scale: float
    half_width: float  # the S1 body's
    half_depth: float

    def project(self, y: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(t, v, distance) of rows `y` at height z: arc position of the nearest centreline point and
        the signed distance along the local antero-posterior axis (v > 0 posterior)."""
        dy = y[:, None] - self.y[None, :]
        dz = z - self.z[None, :]
        k = np.argmin(dy * dy + dz * dz, axis=1)
        th, ey, ez = self.theta[k], y - self.y[k], z - self.z[k]
        v = ey * np.cos(th) + ez * np.sin(th)
        along = ey * np.sin(th) - ez * np.cos(th)
        return self.t[k] + along, v, np.hypot(ey, ez)

    def section(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Cross-section sizes (mm) at arc positions t: body half-width/depth, alae half-width, canal."""
        s, f = self.scale, np.clip(t / self.length, 0.0, 1.0)
        bw = self.half_width * (1 - 0.6 * f)
        bd = self.half_depth * (1 - 0.55 * f)
        wide = s * np.interp(f, [0, 0.15, 0.4, 0.65, 0.85, 1.0], [54, 53, 42, 28, 18, 11])
        rc_ap, rc_lat = s * (7 - 4 * f), s * (13 - 7 * f)
        vc = bd + 1.5 * s + rc_ap
        return {"bw": bw, "bd": bd, "wide": wide, "rc_ap": rc_ap, "rc_lat": rc_lat, "vc": vc,
                "back": vc + rc_ap + 5 * s, "front": -0.5 * bd}


def sacrum_of(anat) -> Sacrum:
    """The sacrum's centreline for this anatomy, built once and kept on it."""
    cached = getattr(anat, "_sacrum", None)
    if cached is not None:
        return cached
    s, l5 = anat.scale, anat.by_name["L5"]
    var = anat.variation
    bw, bd = 0.95 * l5.half_width, 0.85 * l5.half_depth
    disc = anat.disc_height("L5")
    tilt = np.deg2rad(getattr(var, "sacral_tilt_deg", SACRAL_TILT_DEG) if var is not None else SACRAL_TILT_DEG)
    tilt = min(tilt, np.arctan(0.55 * disc / bd))  # the disc keeps some height behind
    length = SACRUM_LENGTH * s
    dt = 0.5
    t = np.arange(-40.0, length + COCCYX_LENGTH * s + dt, dt)
    theta = np.interp(t / length, _THETA_F + (1.0 + COCCYX_LENGTH / SACRUM_LENGTH,),
                      np.deg2rad((np.rad2deg(tilt),) + _THETA_DEG[1:] + (-30.0,)))
    theta[t < 0] = tilt
    y0, z0 = l5.y_body + 2 * s, anat.z_sacrum_top
    step_y, step_z = np.sin(theta) * dt, -np.cos(theta) * dt
    i0 = int(np.argmin(np.abs(t)))
    y = y0 + np.cumsum(step_y) - np.cumsum(step_y)[i0]
    z = z0 + np.cumsum(step_z) - np.cumsum(step_z)[i0]
    out = Sacrum(t, y, z, theta, length, float(anat.spine_x(z0)), s, bw, bd)
    anat._sacrum = out
    return out


def sacrum_landmarks(anat) -> dict[str, np.ndarray]:
    """S1 endplate centre, promontory (its anterior-superior edge) and the apex, anatomy mm."""
    sac = sacrum_of(anat)
    i0 = int(np.argmin(np.abs(sac.t)))
    th, c = sac.theta[i0], np.array([sac.x0, sac.y[i0], sac.z[i0]])
    normal = np.array([0.0, np.cos(th), np.sin(th)])
    apex = int(np.argmin(np.abs(sac.t - sac.length)))
    return {"S1 endplate": c, "promontory": c - sac.half_depth * normal,
            "apex": np.array([sac.x0, sac.y[apex], sac.z[apex]])}


def _sacral_shape(U, V, sec, inset: float = 0.0):
    """Inside the sacrum's cross-section (body, alae, canal arch, dorsal plate), shrunk by `inset`."""
    bw, bd, wide = sec["bw"] - inset, sec["bd"] - inset, sec["wide"] - inset
    body = (U / bw) ** 2 + (V / bd) ** 2 <= 1.0
    front, back = sec["front"] + inset, sec["vc"] + 0.4 * sec["rc_ap"] + 5.0 - inset
    mid, half = 0.5 * (front + back), np.maximum(0.5 * (back - front), 0.5)
    alae = (np.abs(U) / wide) ** 4 + (np.abs(V - mid) / half) ** 4 <= 1.0
    arch = (np.abs(U) <= sec["rc_lat"] + 6.0 - inset) & (V >= 0) & (V <= sec["back"] - inset)
    return body | alae | arch


def _paint_sacrum(c, z: float, anat, sac: Sacrum) -> None:
    s = anat.scale
    if not (sac.z.min() - 10 < z < anat.by_name["L5"].z_bottom + 2):
        return
    win = c.window(sac.x0, float(np.mean(sac.y)), 70 * s, 110 * s)
    if win is None:
        return
    sy, sx, X, Y = win
    t, v, _ = sac.project(Y[:, 0] + float(np.mean(sac.y)), z)
    Tt, V = np.broadcast_to(t[:, None], (len(t), X.shape[1])), np.broadcast_to(v[:, None], (len(t), X.shape[1]))
    U = np.broadcast_to(X, Tt.shape)
    tissue, level = c.tissue[sy, sx], c.level[sy, sx]
    sec = sac.section(Tt)
    sacral = (Tt >= 0) & (Tt <= sac.length)
    # L5/S1 disc: above the tilted endplate, below L5's flat lower plate
    disc = (Tt < 0) & (Tt > -25 * s) & ((U / sac.half_width) ** 2 + (V / sac.half_depth) ** 2 <= 1.0)
    disc &= z < anat.by_name["L5"].z_bottom
    tissue[disc] = T.DISC
    outer = sacral & _sacral_shape(U, V, sec)
    # the sacroiliac joints: a gap round the alae where the ilium (painted first) meets them
    near = sacral & _sacral_shape(U, V, sec, inset=-SI_GAP_MM) & ~outer & (np.abs(U) > sec["bw"])
    tissue[near & np.isin(tissue, (T.CORTICAL, T.CANCELLOUS))] = T.SOFT
    tissue[outer] = T.CORTICAL
    level[outer] = VERTEBRA_IDS["S"]
    core = sacral & _sacral_shape(U, V, sec, inset=1.5 * s)
    tissue[core] = T.CANCELLOUS
    canal = sacral & ((U / sec["rc_lat"]) ** 2 + ((V - sec["vc"]) / sec["rc_ap"]) ** 2 <= 1.0)
    tissue[canal] = T.CORD
    for k, r in enumerate(_FORAMEN_R, start=1):  # fused-segment ridges, foramina between segments
        tk = k * sac.length / 5
        bwk = float(sac.section(np.array(tk))["bw"])
        ridge = (np.abs(Tt - tk) < 0.8 * s) & core & ((U / (sec["bw"] - 1.5 * s)) ** 2
                                                      + (V / (sec["bd"] - 1.5 * s)) ** 2 <= 1.0)
        tissue[ridge] = T.CORTICAL
        if k == 1:  # a rudimentary S1/S2 disc, as many adults keep
            tissue[ridge & (np.abs(Tt - tk) < 0.6 * s) & (np.abs(U) < 0.55 * sec["bw"])] = T.DISC
        rk = r * s
        hole = sacral & ((np.abs(U) - (bwk + rk + 2 * s)) ** 2 + (Tt - tk) ** 2 <= rk * rk)
        hole &= (V > sec["front"] - 3 * s) & (V < sec["back"])
        tissue[hole] = T.FAT
    # coccyx: three small segments continuing the curve
    tail = Tt - sac.length
    for a, b, r in ((3, 11, 6.5), (13, 20, 5.0), (22, 28, 3.8)):
        seg = (tail > a * s) & (tail < b * s) & (U ** 2 + V ** 2 < (r * s) ** 2)
        tissue[seg] = T.CORTICAL
        tissue[seg & (U ** 2 + V ** 2 < ((r - 1.5) * s) ** 2)] = T.CANCELLOUS


def _paint_disks(c, value, pts: np.ndarray, radii: np.ndarray, keep=None) -> None:
    """Paint the union of disks (centres `pts` (n, 2) x, y; `radii` (n,)); `keep(i, X, Y)` may restrict."""
    ok = radii > 0
    if not ok.any():
        return
    pts, radii = pts[ok], radii[ok]
    lo, hi = pts.min(axis=0) - radii.max(), pts.max(axis=0) + radii.max()
    win = c.window(0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]), 0.5 * (hi[0] - lo[0]), 0.5 * (hi[1] - lo[1]))
    if win is None:
        return
    sy, sx, X, Y = win
    X = X + 0.5 * (lo[0] + hi[0])
    Y = Y + 0.5 * (lo[1] + hi[1])
    inside = np.zeros(np.broadcast_shapes(X.shape, Y.shape), bool)
    for (px, py), r in zip(pts, radii):
        inside |= (X - px) ** 2 + (Y - py) ** 2 <= r * r
    c.tissue[sy, sx][inside] = value


def _bezier(p0, p1, p2, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    u = np.linspace(0, 1, n)[:, None]
    return (1 - u) ** 2 * p0 + 2 * u * (1 - u) * p1 + u * u * p2, u[:, 0]


def _paint_ilium(c, z: float, anat, sac: Sacrum) -> None:
    """Both iliac blades at height z: thin fossa, thick posterior part at the joint, crest lip."""
    s, var = anat.scale, anat.variation
    width = getattr(var, "pelvis_width", 1.0) if var is not None else 1.0
    y0, z0 = sac.y[int(np.argmin(np.abs(sac.t)))], anat.z_sacrum_top
    h = (z - z0) / s
    hc = (anat.z_crest - z0) / s
    if not (_ILIUM_H[-1] <= h <= hc):
        return
    hs = np.array(_ILIUM_H[::-1])
    # the sacrum's ala at this height: where the joint's posterior end must sit
    k = int(np.argmin(np.abs(sac.z - z) + 1e3 * (sac.t < 0)))
    ala_w = float(sac.section(np.array(sac.t[k]))["wide"]) / s
    ys = (sac.y[k] - y0) / s if h < 0 else 0.0
    p = []
    for table in (_ILIUM_P0, _ILIUM_P1, _ILIUM_P2):
        xs = [ala_w + 4 if x is None else x for x, _ in table[::-1]]
        yv = [yy + (ys if x is None else 0.0) for x, yy in table[::-1]]
        p.append(np.array([np.interp(h, hs, xs), np.interp(h, hs, yv)]))
    curve, u = _bezier(*p)
    ht = np.interp(u, [0, 0.2, 0.35, 0.8, 0.92, 1.0], [10, 8, 2.4, 2.4, 5, 5])
    ht = np.maximum(ht, np.interp(h, [-65, -45], [11, 0]))  # the iliac body below the sciatic notch
    top = hc - 70 * (u - 0.45) ** 2
    ht = np.where(h > top - 10, ht + 2.5, ht) * (h <= top)
    for side in (-1, 1):
        pts = np.column_stack([sac.x0 + side * (curve[:, 0] * s * width), y0 + curve[:, 1] * s])
        _paint_disks(c, T.CORTICAL, pts, ht * s)
        _paint_disks(c, T.CANCELLOUS, pts, np.where(ht > 3, ht - 1.5, 0) * s)


def _tube(c, z: float, a, b, radius: float, shell: float) -> None:
    """A straight bone tube from a to b (anatomy mm): its section on the slice at z."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    q = a + np.linspace(0, 1, 40)[:, None] * (b - a)
    dz = np.abs(q[:, 2] - z)
    r = np.sqrt(np.clip(radius ** 2 - dz ** 2, 0, None))
    _paint_disks(c, T.CORTICAL, q[:, :2], r)
    _paint_disks(c, T.CANCELLOUS, q[:, :2], np.where(r > shell, r - shell, 0))


def paint_pelvis(c, z: float, anat) -> None:
    """Everything of the pelvis on the slice at height z (after the spine: the sacrum owns the disc)."""
    s = anat.scale
    sac = sacrum_of(anat)
    if z > anat.by_name["L4"].z_center:
        return
    y_l5 = anat.by_name["L5"].y_body
    zf = anat.z_sacrum_bottom - 15 * s
    _paint_ilium(c, z, anat, sac)
    for side in (-1, 1):  # iliac body down to the acetabulum, pubic and ischial rami
        head = np.array([side * 88 * s, y_l5 - 45 * s, zf])
        _tube(c, z, (side * 72 * s, y_l5 - 8 * s, anat.z_sacrum_top - 60 * s), head + [-side * 6 * s, 0, 22 * s],
              16 * s, 2 * s)
        _tube(c, z, head + [-side * 20 * s, -18 * s, 0], (side * 6 * s, y_l5 - 125 * s, zf - 12 * s), 9 * s, 2 * s)
        _tube(c, z, head + [-side * 10 * s, 18 * s, -18 * s], (side * 62 * s, y_l5 - 15 * s, zf - 60 * s),
              12 * s, 2 * s)
    _paint_sacrum(c, z, anat, sac)
    for side in (-1, 1):  # acetabular cup, joint space and femoral head
        centre = (side * 88 * s, y_l5 - 45 * s, zf)
        medial = lambda X, Y, side=side: X * side < 8 * s  # noqa: E731
        c.ellipsoid(T.CORTICAL, z, centre, (31 * s,) * 3, where=medial)
        c.ellipsoid(T.SOFT, z, centre, (26.5 * s,) * 3)
        c.ellipsoid(T.CORTICAL, z, centre, (24 * s,) * 3)
        c.ellipsoid(T.CANCELLOUS, z, centre, (22 * s,) * 3)

