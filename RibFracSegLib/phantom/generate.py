"""Generate one synthetic chest/abdomen CT with its truth, from a seed and parameters.

Pipeline: anatomy layout -> canonical grid -> slice painting (body, organs, spine, sternum,
pelvis) -> rib sweep with fractures -> HU with texture -> scanner blur -> stored orientation ->
scanner noise -> reconstruction circle -> int16. Truth (fracture instances and codes, vertebral
levels and centres, rib bones) is read off the same class maps, then mapped with the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from RibFracSegLib.defaults import L3_ID, PHANTOM_EXTRA_FIELDS_OF_VIEW, PHANTOM_FIELDS_OF_VIEW, PHANTOM_SUBSLICE_MM
from RibFracSegLib.geometry import lps_to_ras
from RibFracSegLib.phantom.anatomy import LEVELS, Anatomy
from RibFracSegLib.phantom.body import SliceCanvas, paint_slice
from RibFracSegLib.phantom.fractures import FracturePlan, plan_fractures
from RibFracSegLib.phantom.grid import canonical_grid, stored_direction, stored_grid, to_stored
from RibFracSegLib.phantom.pelvis import sacrum_landmarks
from RibFracSegLib.phantom.ribs import separate_from_bone, sweep_rib
from RibFracSegLib.phantom.tissue import RIB_BONE, hu_tables, is_bone
from RibFracSegLib.phantom.variation import draw_variation

KIND_NAMES = {1: "displaced", 2: "non-displaced", 3: "buckle", 4: "segmental"}
GENERATOR_VERSION = 4  # bump when the same parameters give other voxels: stored phantom sets and caches are
#   remade (2: lung in the paravertebral gutters, up to the posterior ribs, `body._paint_gutters`; 3: the
#   demo's, the held-out sets' and frame training's phantoms have a slice profile, `PhantomParams.slice_profile`;
#   4: ribs ease across the body wall's step at the diaphragm, `anatomy.RIB_WALL_RAMP_MM`)


@dataclass(frozen=True)
class PhantomParams:
    shape: tuple[int, int, int] = (256, 256, 160)  # (i, j, k) voxels
    spacing: tuple[float, float, float] = (1.3, 1.3, 2.0)  # mm
    fov: str = "thorax"  # thorax | thorax_abdomen | abdomen_pelvis (| abdomen | lumbar_pelvis, by name)
    body_scale: float = 1.0
    fat_mm: float = 18.0
    n_fractures: int = 4
    noise_hu: float = 15.0
    blur_mm: float = 0.5
    orientation: str = "LPS"  # LPS | RAS | LPI | oblique
    oblique_deg: tuple[float, float, float] = (8.0, 4.0, 6.0)
    outside_hu: Optional[int] = None  # -1024 or -2048 outside the reconstruction circle
    p_undefined: float = 0.1  # chance a fracture's code is recorded as -1
    seed: int = 0
    variation: bool = False  # patient variation (phantom.variation), from its own stream of `seed`
    slice_profile: bool = False  # a slice averages sub-slices across its thickness (PHANTOM_SUBSLICE_MM), as a
    #   scanner's does; off: sampled at its centre (faster; thin slices differ little)


@dataclass(frozen=True)
class FractureTruth:
    label_id: int
    code: int
    kind: str
    rib: str  # e.g. "R5" (right fifth rib)
    center_ijk: tuple[float, float, float]
    center_lps: tuple[float, float, float]
    center_ras: tuple[float, float, float]
    voxel_count: int


@dataclass(frozen=True)
class VertebraTruth:
    name: str
    label_id: int
    center_ijk: tuple[float, float, float]
    center_lps: tuple[float, float, float]
    center_ras: tuple[float, float, float]


@dataclass
class PhantomCase:
    params: PhantomParams
    image: sitk.Image  # Int16 HU
    fracture_labels: sitk.Image  # UInt16 instances 1..n
    vertebra_labels: sitk.Image  # UInt8 VerSe ids
    tissue: sitk.Image  # UInt8 Tissue classes
    rib_labels: sitk.Image  # UInt8 1..12 right ribs, 13..24 left ribs (bone voxels)
    fractures: list[FractureTruth]
    vertebrae: list[VertebraTruth]  # those whose body centre is in the field of view
    rib_centerlines_lps: dict[str, np.ndarray] = field(default_factory=dict)
    landmarks_lps: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # pelvis.sacrum_landmarks

    @property
    def sacrum_top_lps(self) -> Optional[tuple[float, float, float]]:
        """Centre of the S1 endplate (LPS mm) when it is in the field of view, else None."""
        p = self.landmarks_lps.get("S1 endplate")
        if p is None:
            return None
        ijk = self.image.TransformPhysicalPointToContinuousIndex(p)
        return p if all(-0.5 <= i <= n - 0.5 for i, n in zip(ijk, self.image.GetSize())) else None

    @property
    def l3(self) -> Optional[VertebraTruth]:
        return next((v for v in self.vertebrae if v.label_id == L3_ID), None)


def _fov_center_z(anat: Anatomy, fov: str, extent_mm: float, rng: np.random.Generator) -> float:
    v, s = anat.by_name, anat.scale
    fovs = PHANTOM_FIELDS_OF_VIEW + PHANTOM_EXTRA_FIELDS_OF_VIEW
    if fov not in fovs:
        raise ValueError(f"Unknown field of view {fov!r}; choose one of {fovs}.")
    top, bottom = {"thorax": (v["T1"].z_top + 45 * s, v["L1"].z_center),
                   "thorax_abdomen": (v["T1"].z_top + 30 * s, v["L4"].z_bottom),
                   "abdomen_pelvis": (v["T10"].z_top, anat.z_sacrum_bottom - 40 * s),
                   "abdomen": (v["T10"].z_center, v["L4"].z_center),
                   "lumbar_pelvis": (v["L2"].z_top, anat.z_sacrum_bottom - 40 * s)}[fov]
    zc = 0.5 * (top + bottom) + rng.uniform(-10, 10)
    if anat.variation is not None and fov != "thorax":  # where a scan starts and stops varies
        zc += rng.uniform(-35, 35 if fov != "lumbar_pelvis" else 0)  # (below the ribs: never higher)
    if fov == "thorax":  # a chest CT must not reach L3
        zc = max(zc, v["L3"].z_top + 5 + extent_mm / 2)
    return zc


def generate_phantom(params: PhantomParams) -> PhantomCase:
    """Make one phantom CT and its truth. The same params (seed included) give identical arrays."""
    rng = np.random.default_rng(params.seed)
    variation = draw_variation(np.random.default_rng([params.seed, 11]), LEVELS) if params.variation else None
    anat = Anatomy(params.body_scale, params.fat_mm, rng, variation)
    direction = stored_direction(params.orientation, params.oblique_deg)
    extent_z = float(np.abs(direction @ (np.array(params.spacing) * np.array(params.shape)))[2])
    zc = _fov_center_z(anat, params.fov, extent_z, rng)
    # Scanner coordinates: an arbitrary table position; the patient slightly off the FOV centre.
    center_lps = np.array([rng.uniform(-20, 20), rng.uniform(-30, 30), rng.uniform(-600, 100)])
    offset = center_lps - np.array([rng.uniform(-8, 8), rng.uniform(-8, 8), zc])  # lps = anatomy + offset
    stored = stored_grid(params.shape, params.spacing, direction, center_lps)
    canon = canonical_grid(stored)
    gx, gy, gz = (ax - o for ax, o in zip(canon.axes_mm(), offset))
    n_sub = sub_slices(canon.spacing[2]) if params.slice_profile else 1
    gz = (gz[:, None] + (np.arange(n_sub) - (n_sub - 1) / 2) * canon.spacing[2] / n_sub).ravel()

    def in_view(p_anat: np.ndarray, margin: float = 10.0) -> bool:
        idx = stored.physical_to_index(p_anat + offset)
        return all(margin / sp <= i <= n - 1 - margin / sp for i, n, sp in zip(idx, stored.size, stored.spacing))

    plans = plan_fractures(anat.ribs, params.n_fractures, rng, params.spacing, in_view, params.p_undefined)
    tissue, level, ribs, frac = _render(anat, plans, (gx, gy, gz), rng)
    var = anat.variation
    sub_spacing = (*canon.spacing[:2], canon.spacing[2] / n_sub)
    image = _intensities(tissue, (anat.contrast, bool(var and var.oral_contrast), var and var.marrow_hu),
                         params, sub_spacing, rng)
    image = image.reshape(-1, n_sub, *image.shape[1:]).mean(axis=1, dtype=np.float32)
    tissue, level, ribs, frac = (a[n_sub // 2::n_sub] for a in (tissue, level, ribs, frac))  # truth: the centres
    to_img = lambda arr: _as_image(arr, canon)  # noqa: E731
    image = to_stored(to_img(image), stored, labels=False)
    maps = [to_stored(to_img(a), stored, labels=True) for a in (tissue, level, ribs, frac)]
    image = _scanner(image, params, rng)
    fractures = _fracture_truth(maps[3], plans, anat)
    vertebrae = []
    for vb in anat.vertebrae:
        lps = tuple(float(v) for v in vb.center + offset)
        ijk = image.TransformPhysicalPointToContinuousIndex(lps)
        if all(-0.5 <= i <= n - 0.5 for i, n in zip(ijk, image.GetSize())):
            vertebrae.append(VertebraTruth(vb.name, vb.label_id, tuple(ijk), lps, lps_to_ras(lps)))
    centerlines = {r.label: r.points + offset for r in anat.ribs}
    landmarks = {k: tuple(float(c) for c in p + offset) for k, p in sacrum_landmarks(anat).items()}
    return PhantomCase(params, image, maps[3], maps[1], maps[0], maps[2], fractures, vertebrae, centerlines, landmarks)


def sub_slices(slice_mm: float) -> int:
    """Sub-slices a slice of this thickness averages: odd (the middle one is its centre, where the truth
    maps are read), at most PHANTOM_SUBSLICE_MM apart."""
    n = int(np.ceil(slice_mm / PHANTOM_SUBSLICE_MM - 1e-6))
    return n + 1 - n % 2


def _render(anat: Anatomy, plans: list[FracturePlan], axes, rng: np.random.Generator):
    gx, gy, gz = axes
    shape = (len(gz), len(gy), len(gx))
    tissue = np.zeros(shape, np.uint8)
    level = np.zeros(shape, np.uint8)
    # Smooth random fields sampled per slice: bowel loops (10 mm lattice), lung vessels (3 mm).
    lo = np.array([gz[0], gy[0], gx[0]])
    extent = np.array([np.ptp(gz), np.ptp(gy), np.ptp(gx)])
    fields = {}
    for kind, lattice in (("bowel", 10.0), ("vessel", 3.0)):
        f = ndimage.gaussian_filter(rng.standard_normal(tuple((extent / lattice).astype(int) + 3)), 0.8)
        fields[kind] = (f / (f.std() + 1e-9)).astype(np.float32), lattice

    def texture(X, Y, z, kind):
        field, lattice = fields[kind]
        Xb, Yb = np.broadcast_arrays(X, Y)
        coords = np.stack([np.full(Xb.shape, (z - lo[0]) / lattice), (Yb - lo[1]) / lattice, (Xb - lo[2]) / lattice])
        return ndimage.map_coordinates(field, coords.reshape(3, -1), order=1, mode="nearest").reshape(Xb.shape)

    canvas = SliceCanvas(gx, gy)
    for k, z in enumerate(gz):
        canvas.tissue, canvas.level = tissue[k], level[k]
        paint_slice(canvas, float(z), anat, texture)
    ribs = np.zeros(shape, np.uint8)
    frac = np.zeros(shape, np.uint16)
    y_center = float(anat.cavity(0.0)[2])
    for ri, rib in enumerate(anat.ribs):
        mine = [p for p in plans if p.rib_index == ri]
        raster = sweep_rib(rib, mine, (gx, gy, gz), y_center, anat.scale)
        if raster is None:
            continue
        other_bone = is_bone(tissue[raster.box])
        separate_from_bone(raster, other_bone)
        write = (raster.tissue > 0) & ~other_bone
        tissue[raster.box][write] = raster.tissue[write]
        bone = np.isin(raster.tissue, RIB_BONE) & write
        ribs[raster.box][bone] = rib.rib_id
        has = raster.fracture > 0
        frac[raster.box][has] = raster.fracture[has]
    return tissue, level, ribs, frac


def _intensities(tissue: np.ndarray, contrast: tuple, params: PhantomParams, spacing, rng) -> np.ndarray:
    mean, sd = hu_tables(*contrast)  # (IV, oral, marrow HU)
    hu = rng.standard_normal(tissue.shape, dtype=np.float32)
    hu *= sd[tissue]
    hu += mean[tissue]
    sigma = [params.blur_mm / s for s in spacing[::-1]]
    return ndimage.gaussian_filter(hu, sigma, output=np.float32, truncate=3.0)


def _as_image(arr: np.ndarray, grid) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(grid.spacing)
    img.SetOrigin(grid.origin)
    img.SetDirection(grid.direction)
    return img


def _scanner(image: sitk.Image, params: PhantomParams, rng) -> sitk.Image:
    """Scanner noise on the stored grid, the reconstruction circle, and int16 HU."""
    arr = sitk.GetArrayViewFromImage(image).astype(np.float32)
    arr += params.noise_hu * rng.standard_normal(arr.shape, dtype=np.float32)
    if params.outside_hu is not None:
        nk, nj, ni = arr.shape
        jj, ii = np.ogrid[:nj, :ni]
        r = min(ni, nj) / 2.0
        outside = ((ii - (ni - 1) / 2) ** 2 + (jj - (nj - 1) / 2) ** 2) > r * r
        arr[:, outside] = params.outside_hu
    out = sitk.GetImageFromArray(np.clip(np.rint(arr), -2048, 3071).astype(np.int16))
    out.CopyInformation(image)
    return out


def _fracture_truth(labels: sitk.Image, plans: list[FracturePlan], anat: Anatomy) -> list[FractureTruth]:
    arr = sitk.GetArrayViewFromImage(labels)
    ids = [p.label_id for p in plans]
    counts = ndimage.sum_labels(np.ones_like(arr, np.float32), arr, ids)
    centers = ndimage.center_of_mass(np.ones_like(arr, np.uint8), arr, ids)
    out = []
    for plan, n, c in zip(plans, counts, centers):
        ijk = (float(c[2]), float(c[1]), float(c[0]))
        lps = labels.TransformContinuousIndexToPhysicalPoint(ijk)
        out.append(FractureTruth(plan.label_id, plan.code, KIND_NAMES[plan.kind], anat.ribs[plan.rib_index].label,
                                 ijk, tuple(lps), lps_to_ras(lps), int(n)))
    return out
