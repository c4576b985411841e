"""Look at simulated fractures in the real LIDC-IDRI-0001 CT, beside the same rib intact.

    python benchmarks/qc_simulated_fractures.py [--out .cache/qc_sim] [--seed 0] [--per-kind 2]
        [--overview Resources/simulated_fractures_lidc.png] [--ct CT --ribs LABELS|auto]

Ribs from the CT's TotalSegmentator label map (centrelines computed from it); another CT with
--ct, its ribs from a label map or `auto` (segment_ribs). For every fracture one
PNG: top row the intact CT, bottom row with the fracture; columns: the axial slice through the
fracture (annotation outlined), and the rib straightened along its centreline (curved planar
reformat, 0.25 mm pixels) seen face-on (cranio-caudal across) and edge-on (radial across).
With --overview, one more picture: the first fracture of each type, intact above simulated, axial
and edge-on. Bone window [-450, 1350] HU. LIDC-IDRI (TCIA, CC BY 3.0): Armato et al., Med Phys 2011.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import lidc_path  # noqa: E402

from RibFracSegLib.defaults import FRACTURE_CODES  # noqa: E402
from RibFracSegLib.simulate.case import grid_of, simulate_case  # noqa: E402
from RibFracSegLib.simulate.dataset import load_ribs  # noqa: E402
from RibFracSegLib.ribs.frame import RibFrame  # noqa: E402

WINDOW = (-450, 1350)
PIXEL_MM = 0.25


def sample(arr: np.ndarray, grid, lps: np.ndarray, order: int = 1) -> np.ndarray:
    kji = np.linalg.solve(grid.matrix, (lps.reshape(-1, 3) - grid.origin).T)[::-1]
    return ndimage.map_coordinates(arr, kji, order=order, mode="nearest").reshape(lps.shape[:-1])


def straightened(frame: RibFrame, arc: float, half_len: float = 30.0, half_w: float = 12.0):
    """Points of two curved planar reformats around `arc`: across = radial (edge-on) and cranio-caudal (face-on)."""
    s = np.arange(arc - half_len, arc + half_len, PIXEL_MM)
    idx = np.clip(np.rint((s - frame.arc0_mm) / frame.voxel_mm).astype(int), 0, len(frame.points_lps) - 1)
    p, t = frame.points_lps[idx], frame.tangent[idx]
    radial = np.cross(t, [0.0, 0.0, 1.0])
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    face = np.cross(t, radial)
    v = np.arange(-half_w, half_w, PIXEL_MM)
    return {name: p[None] + v[:, None, None] * d[None] for name, d in (("face-on", face), ("edge-on", radial))}


def axial_points(grid, center_lps: np.ndarray, half: float = 30.0) -> np.ndarray:
    u = np.arange(-half, half, PIXEL_MM)
    yy, xx = np.meshgrid(u, u, indexing="ij")
    return np.stack([center_lps[0] + xx, center_lps[1] + yy, np.full_like(xx, center_lps[2])], axis=-1)


def picture(before, after, labels, grid, frame, built, path: Path) -> None:
    spec = built.spec
    views = {"axial": axial_points(grid, np.array(built.center_lps)), **straightened(frame, spec.center_arc_mm)}
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for c, (name, pts) in enumerate(views.items()):
        mask = sample(labels, grid, pts, order=0) == spec.label_id
        for r, arr in enumerate((before, after)):
            ax = axes[r, c]
            ax.imshow(sample(arr, grid, pts), cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], origin="lower" if c else "upper")
            if r == 1 and mask.any():
                ax.contour(mask, levels=[0.5], colors="orange", linewidths=0.6, origin="lower" if c else "upper")
            ax.set_title(f"{'intact' if r == 0 else 'simulated'}: {name}", fontsize=9)
            ax.set_axis_off()
    detail = (f"gap {spec.gap_mm:.1f} mm, shift {np.linalg.norm(spec.shift_lps):.1f} mm, angulation {spec.angulation_deg:.0f} deg"
              if spec.kind in (1, 4) else f"crack {spec.gap_mm:.1f} mm, offset {spec.crack_offset_mm:.1f}" if spec.kind == 2
              else f"fold {spec.bump_mm:.1f} mm, sclerosis +{spec.sclerosis_hu:.0f} HU")
    fig.suptitle(f"{FRACTURE_CODES[spec.kind]} on {spec.rib} at {spec.center_arc_mm:.0f} mm from the head; {detail}; "
                 f"fill {built.fill_hu:.0f} HU, noise {built.noise_hu:.0f} HU; label {built.voxel_count} voxels. "
                 "Along-rib views: rib straightened, head to the left.", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def overview(before, after, labels, grid, fractures, path: Path, name: str, spacing) -> None:
    """First fracture of each type: rows intact / simulated axial, intact / simulated along the rib (edge-on)."""
    firsts = [next(b for b in fractures if b.spec.kind == k) for k in (1, 2, 3, 4) if any(b.spec.kind == k for b in fractures)]
    fig, axes = plt.subplots(4, len(firsts), figsize=(3.2 * len(firsts), 8.6))
    for c, b in enumerate(firsts):
        views = (axial_points(grid, np.array(b.center_lps), half=18.0),
                 straightened(b.frame, b.spec.center_arc_mm, half_len=22.0, half_w=9.0)["edge-on"])
        for r, (pts, arr) in enumerate(((views[0], before), (views[0], after), (views[1], before), (views[1], after))):
            ax = axes[r, c]
            ax.imshow(sample(arr, grid, pts), cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], origin="upper" if r < 2 else "lower")
            ax.set_axis_off()
            ax.set_title(f"{FRACTURE_CODES[b.spec.kind]} {b.spec.rib}: {('intact', 'simulated')[r % 2]}"
                         f"{' (along rib)' if r > 1 else ''}", fontsize=8)
    fig.suptitle(f"Fractures simulated into {name} ({' x '.join(f'{s:.2f}' for s in spacing)} mm; TCIA, CC BY), "
                 "bone window", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / ".cache" / "qc_sim"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-kind", type=int, default=2)
    parser.add_argument("--overview", help="also write one picture of the four types here")
    parser.add_argument("--ct", help="another CT (default: LIDC-IDRI-0001)")
    parser.add_argument("--ribs", help="its rib label map, or auto (default: LIDC-IDRI-0001's TotalSegmentator map)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9][0-9]-*.png"):  # pictures of an earlier run
        old.unlink()
    ct = sitk.ReadImage(args.ct or str(lidc_path("cxr.nii.gz")))
    ribs = load_ribs(ct, args.ribs or lidc_path("mask.nii.gz"))
    name = Path(args.ct).name.split(".")[0] if args.ct else "LIDC-IDRI-0001"
    case = simulate_case(ct, ribs, 4 * args.per_kind, np.random.default_rng(args.seed), kinds=[1, 2, 3, 4])
    before = sitk.GetArrayFromImage(ct).astype(np.float32)
    after = sitk.GetArrayFromImage(case.image).astype(np.float32)
    labels = sitk.GetArrayFromImage(case.fracture_labels)
    grid = grid_of(ct, before.shape)

    for b in case.fractures:
        path = out / f"{b.spec.label_id:02d}-{FRACTURE_CODES[b.spec.kind]}-{b.spec.rib.replace(' ', '_')}.png"
        picture(before, after, labels, grid, b.frame, b, path)
        print(f"{path}: {FRACTURE_CODES[b.spec.kind]} {b.spec.rib}, label {b.voxel_count} voxels, "
              f"fill {b.fill_hu:.0f} HU, noise {b.noise_hu:.1f} HU")
    if args.overview:
        overview(before, after, labels, grid, case.fractures, Path(args.overview), name, ct.GetSpacing())
        print(f"overview: {args.overview}")
    changed = before != after
    inside = np.zeros(changed.shape, bool)
    for b in case.fractures:
        inside[b.box] = True
    print(f"{int(changed.sum())} voxels changed, {int((changed & ~inside).sum())} of them outside the fractures' "
          f"boxes; notes: {case.notes or 'none'}")


if __name__ == "__main__":
    main()
