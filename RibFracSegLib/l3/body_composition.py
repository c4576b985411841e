"""Body composition on the L3 slice: muscle, subcutaneous (SAT), visceral (VAT) and intermuscular fat.

HU ranges (Alberta protocol, defaults.MUSCLE_HU/SAT_HU/VAT_HU) cannot tell visceral from
subcutaneous fat, nor muscle from organs, so compartments are separated by geometry:
- the body is the largest piece above defaults.L3_BODY_HU, holes filled;
- the abdominal wall is the soft tissue (above the fat range) inside the skin band, closed so that
  gaps up to 2 x L3_WALL_CLOSING_MM are sealed;
- SAT = fat reachable from under the skin without crossing the wall; everything else is "inner";
- muscle = muscle-HU pixels of the inner compartment: in front of the vertebral body only the wall
  layer (as deep as the wall is thick), behind it all (psoas, quadratus, paraspinal muscles); pieces
  touching neither the rim nor the bone (bowel, organs) are not muscle;
- IMAT = fat enclosed by muscle; VAT = visceral-range fat of the inner compartment elsewhere.
This is a geometric approximation (no segmentation network): expect organ walls touching muscle to
be counted as muscle on real CTs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.morphology import disk

from RibFracSegLib import defaults
from RibFracSegLib.options import check_height
from RibFracSegLib.orientation import canonical_image
from RibFracSegLib.masks import body_mask

# Per-pixel tissue labels of BodyComposition.mask.
NONE, MUSCLE, SAT, VAT, IMAT = 0, 1, 2, 3, 4
TISSUE_NAMES = {MUSCLE: "muscle", SAT: "sat", VAT: "vat", IMAT: "imat"}
TISSUE_TITLES = {MUSCLE: "Skeletal muscle", SAT: "Subcutaneous fat", VAT: "Visceral fat", IMAT: "Intermuscular fat"}
TISSUE_COLOURS = {MUSCLE: (220, 40, 40), SAT: (250, 210, 40), VAT: (40, 200, 90), IMAT: (60, 140, 255)}  # RGB 0-255


@dataclass(frozen=True)
class BodyComposition:
    """Areas in cm^2 on one axial slice; `mask` holds the tissue label of every pixel ([row, col])."""

    muscle_cm2: float
    sat_cm2: float
    vat_cm2: float
    imat_cm2: float | None
    smi: float | None  # skeletal muscle index, cm^2/m^2, when height is known
    slice_index: int
    height_m: float | None = None
    mask: np.ndarray = field(default=None, repr=False, compare=False)
    hu: np.ndarray = field(default=None, repr=False, compare=False)  # the slice, for the overlay
    pixel_mm: tuple[float, float] = (1.0, 1.0)  # (row, column) spacing

    def as_dict(self) -> dict:
        def r(v):
            return None if v is None else round(float(v), 2)

        return {"muscle_cm2": r(self.muscle_cm2), "sat_cm2": r(self.sat_cm2), "vat_cm2": r(self.vat_cm2),
                "imat_cm2": r(self.imat_cm2), "smi_cm2_per_m2": r(self.smi), "height_m": self.height_m,
                "slice_index": self.slice_index}

    def to_dict(self) -> dict:
        """The measures, unrounded, as JSON types; `mask` and `hu` are arrays and travel separately
        (`from_dict(data, mask=..., hu=...)`)."""
        f = _float_or_none
        return {"muscle_cm2": float(self.muscle_cm2), "sat_cm2": float(self.sat_cm2), "vat_cm2": float(self.vat_cm2),
                "imat_cm2": f(self.imat_cm2), "smi": f(self.smi), "slice_index": int(self.slice_index),
                "height_m": f(self.height_m), "pixel_mm": [float(v) for v in self.pixel_mm]}

    @classmethod
    def from_dict(cls, data: dict, mask: np.ndarray | None = None, hu: np.ndarray | None = None) -> "BodyComposition":
        """The inverse of `to_dict`; unknown or missing keys raise a ValueError."""
        names = {"muscle_cm2", "sat_cm2", "vat_cm2", "imat_cm2", "smi", "slice_index", "height_m", "pixel_mm"}
        if set(data) != names:
            raise ValueError(f"Not a BodyComposition: keys {sorted(set(data) ^ names)} differ from {sorted(names)}.")
        f = _float_or_none
        return cls(muscle_cm2=float(data["muscle_cm2"]), sat_cm2=float(data["sat_cm2"]), vat_cm2=float(data["vat_cm2"]),
                   imat_cm2=f(data["imat_cm2"]), smi=f(data["smi"]), slice_index=int(data["slice_index"]),
                   height_m=f(data["height_m"]), mask=mask, hu=hu,
                   pixel_mm=tuple(float(v) for v in data["pixel_mm"]))


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


def _in(hu: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
    return (hu >= rng[0]) & (hu <= rng[1])


def _disk_px(mm: float, pixel_mm: float) -> np.ndarray:
    return disk(max(1, int(round(mm / pixel_mm))))


def compartments(hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Tissue label per pixel (NONE/MUSCLE/SAT/VAT/IMAT) of an axial slice in HU."""
    body = body_mask(hu, defaults.L3_BODY_HU)
    inside_skin = ndimage.binary_erosion(body, _disk_px(defaults.L3_SKIN_MM, pixel_mm))
    fat = _in(hu, defaults.SAT_HU) & body
    wall = ndimage.binary_closing((hu > defaults.SAT_HU[1]) & inside_skin,
                                  _disk_px(defaults.L3_WALL_CLOSING_MM, pixel_mm)) & inside_skin
    # Outer compartment: what is reachable from just under the skin without crossing the wall.
    open_space = inside_skin & ~wall
    seeds = open_space & ~ndimage.binary_erosion(inside_skin, _disk_px(2 * pixel_mm, pixel_mm))
    labels, _ = ndimage.label(open_space)
    outer = np.isin(labels, np.unique(labels[seeds & (labels > 0)])) | (body & ~inside_skin)
    inner = body & ~outer
    muscle = _wall_muscle(hu, inner, pixel_mm)
    muscle_region = ndimage.binary_closing(muscle, _disk_px(2.0, pixel_mm))  # fat pockets between muscles
    mask = np.zeros(hu.shape, np.uint8)
    mask[fat & outer] = SAT
    mask[_in(hu, defaults.VAT_HU) & inner & ~muscle_region] = VAT
    mask[fat & inner & muscle_region & ~muscle] = IMAT
    mask[muscle] = MUSCLE
    return mask


def _wall_muscle(hu: np.ndarray, inner: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Muscle-HU pixels of the inner compartment that belong to the wall or the spine's muscles.

    In front of the vertebral body only the outer layer counts, as deep as the wall is thick (the
    depth where muscle stops being the majority), so bowel and organs against the wall are left
    out; behind the front of the vertebral body (psoas, quadratus, paraspinal muscles) all do.
    Pieces touching neither the rim nor the bone are dropped; the spinal canal is not muscle."""
    bone = (hu > defaults.BONE_HU) & inner
    closed = ndimage.binary_closing((hu > defaults.L3_VERTEBRA_HU) & inner, _disk_px(3.0, pixel_mm))
    canal = ndimage.binary_dilation(ndimage.binary_fill_holes(closed) & ~bone, _disk_px(1.0, pixel_mm))
    candidates = _in(hu, defaults.MUSCLE_HU) & inner & ~canal
    depth = ndimage.distance_transform_edt(inner) * pixel_mm
    posterior = np.zeros(hu.shape, bool)
    spine = _central_bone(bone)
    if spine is not None:
        posterior[max(0, int(np.nonzero(spine)[0].min() - defaults.L3_SPINE_MARGIN_MM / pixel_mm)):] = True
    front = inner & ~posterior
    thickness = defaults.L3_WALL_MAX_MM
    for d in np.arange(1.0, defaults.L3_WALL_MAX_MM, 1.0):
        shell = front & (depth > d - 1) & (depth <= d)
        if shell.sum() > 10 and candidates[shell].mean() < 0.5:
            thickness = d
            break
    candidates &= (depth <= thickness) | posterior
    rim = inner & (depth <= defaults.L3_MUSCLE_RIM_MM)
    near_bone = ndimage.binary_dilation(bone, _disk_px(2.0, pixel_mm))
    labels, _ = ndimage.label(candidates)
    keep = np.unique(labels[(rim | near_bone) & (labels > 0)])
    return np.isin(labels, keep[keep > 0]) & candidates


def _central_bone(bone: np.ndarray) -> np.ndarray | None:
    """The largest bone piece (the vertebra at L3), or None."""
    labels, n = ndimage.label(bone)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(bone, labels, index=np.arange(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def l3_slice(image: sitk.Image, l3) -> tuple[sitk.Image, int]:
    """The CT in canonical (LPS) order and the index k of the L3 slice in it: the network's row when
    `l3` carries its projections (an L3Result), else the slice through `l3.center_lps` (an L3Check)."""
    from RibFracSegLib.l3.decoding import row_to_k

    proj = getattr(l3, "projections", None)
    canonical = proj.canonical if proj is not None else canonical_image(image)
    if proj is not None:
        k = int(round(row_to_k(proj, l3.row_mm / proj.spacing_mm)))
    else:
        k = int(round(canonical.TransformPhysicalPointToContinuousIndex(l3.center_lps)[2]))
    return canonical, int(np.clip(k, 0, canonical.GetSize()[2] - 1))


def body_composition(image: sitk.Image, l3, height_m: float | None = None) -> BodyComposition:
    """Muscle/SAT/VAT/IMAT areas on the L3 slice (`l3`: an L3Result or an L3Check)."""
    canonical, k = l3_slice(image, l3)
    hu = sitk.GetArrayViewFromImage(canonical)[k].astype(np.float32)
    return slice_composition(hu, canonical.GetSpacing()[:2], l3.slice_index, height_m)


def tissue_labels(image: sitk.Image, l3, body: BodyComposition) -> sitk.Image:
    """`body.mask` (MUSCLE/SAT/VAT/IMAT) as a UInt8 label image on the CT's own grid, 0 off the L3
    slice: what a reader checks the areas against (the Slicer segmentation). The canonical view is a
    re-ordering, not a resampling, so the nearest-neighbour resampling back is exact (for an L3Result
    of an oblique CT, whose projections were made on patient axes, it is the nearest voxel)."""
    canonical, k = l3_slice(image, l3)
    slab = sitk.GetImageFromArray(np.asarray(body.mask, np.uint8)[None])
    slab.SetSpacing(canonical.GetSpacing())
    slab.SetDirection(canonical.GetDirection())
    slab.SetOrigin(canonical.TransformIndexToPhysicalPoint((0, 0, k)))
    return sitk.Resample(slab, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def slice_composition(hu: np.ndarray, spacing_xy: tuple[float, float], slice_index: int = 0,
                      height_m: float | None = None) -> BodyComposition:
    """Body composition of one axial slice ([row=j, col=i] HU, spacing (x, y) in mm)."""
    check_height(height_m)
    sx, sy = float(spacing_xy[0]), float(spacing_xy[1])
    mask = compartments(hu, (sx + sy) / 2)
    cm2 = sx * sy / 100.0
    areas = {t: float((mask == t).sum() * cm2) for t in TISSUE_NAMES}
    smi = areas[MUSCLE] / height_m**2 if height_m else None
    return BodyComposition(muscle_cm2=areas[MUSCLE], sat_cm2=areas[SAT], vat_cm2=areas[VAT], imat_cm2=areas[IMAT],
                           smi=smi, slice_index=slice_index, height_m=height_m, mask=mask, hu=hu, pixel_mm=(sy, sx))
