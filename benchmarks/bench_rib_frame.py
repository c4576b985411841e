"""Rib frames on LIDC-IDRI-0001: per rib its length, frame voxels, seconds and the maps' round trip.

Ribs come from the CT's TotalSegmentator labels (`ribs/label_maps.to_rib_labels` -> our 1..24, then
`ribs/centrelines.ribs_from_label_map`), so the figures measure the frame, not the rib step. Per rib:
frame seconds (build + sample), the share of frame voxels that map one-to-one (`RibFrame.one_to_one`),
the round-trip error frame -> LPS -> frame on those (max, mm), CT voxel -> frame -> CT on every
CT voxel the frame reaches (max, mm), the largest twist between neighbouring sections (degrees),
the smallest cosine between `u` and the outward direction (where that is defined) and the seconds
to write the frame's bone back onto the CT grid (`frame_to_ct`); then how much of that lands on bone. `--png` writes mid-plane slices of a few straightened ribs.
Timings: run under `flock -x /tmp/cpu.lock` for figures to quote.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import lidc_path  # noqa: E402

from RibFracSegLib import defaults  # noqa: E402
from RibFracSegLib.ribs.centrelines import ribs_from_label_map  # noqa: E402
from RibFracSegLib.geometry import index_to_lps_affine  # noqa: E402
from RibFracSegLib.ribs.frame import RibFrame, frame_to_ct  # noqa: E402
from RibFracSegLib.ribs.frame_build import body_centre, outward_cosine, rib_frame, section_twist_deg  # noqa: E402
from RibFracSegLib.ribs.label_maps import to_rib_labels  # noqa: E402
from RibFracSegLib.ribs.qc import save_png  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def round_trip_mm(frame: RibFrame, ct: sitk.Image, every: int) -> tuple[float, float, float]:
    """(one-to-one share, max frame -> LPS -> frame error in mm on those, max CT -> frame -> CT error in mm
    on the CT voxels the frame reaches), on every `every`-th frame voxel."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in frame.shape], indexing="ij"), -1).reshape(-1, 3)[::every]
    idx = grid.astype(float)
    ok = frame.one_to_one(idx)
    back = frame.lps_to_index(frame.index_to_lps(idx[ok]))
    frame_err = float(np.nanmax(np.abs(back - idx[ok]))) * frame.voxel_mm if ok.any() else float("nan")
    m, origin = index_to_lps_affine(ct)
    ijk = np.unique(np.rint(frame.index_to_ct(idx, ct)).astype(int), axis=0)  # CT voxels inside the frame
    ijk = ijk[np.all((ijk >= 0) & (ijk < ct.GetSize()), axis=1)]
    there = frame.ct_to_index(ijk, ct)
    hit = np.isfinite(there[:, 0])
    again = origin + frame.index_to_ct(there[hit], ct) @ m.T
    ct_err = float(np.max(np.linalg.norm(again - (origin + ijk[hit] @ m.T), axis=1))) if hit.any() else float("nan")
    return float(ok.mean()), frame_err, ct_err


def picture(frames: list[RibFrame], names: list[str], path: Path) -> Path:
    """Per rib two mid-plane slices, arc left (head) to right: (arc, u) through the centreline -- outer
    cortex on top -- and (arc, v) -- superior cortex on top; bone window."""
    lo, hi = defaults.UNFOLD_WINDOW_HU
    rows, width = [], 0
    for frame in (f for f in frames if f.name in names):
        vol, h = frame.volume, frame.half
        for label, plane in (("u (out up)", vol[:, ::-1, h].T), ("v (head-wards up)", vol[:, h, ::-1].T)):
            grey = (np.clip((plane - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
            img = Image.fromarray(grey).resize((grey.shape[1] * 2, grey.shape[0] * 2), Image.NEAREST).convert("RGB")
            ImageDraw.Draw(img).text((4, 2), f"{frame.name} {label}", fill=(255, 200, 0))
            rows.append(img)
            width = max(width, img.width)
    canvas = Image.new("RGB", (width, sum(r.height + 6 for r in rows)), (40, 40, 40))
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height + 6
    return save_png(canvas, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", default=str(ROOT / "out" / "rib_frames_lidc0001.png"))
    parser.add_argument("--show", default="L3,L6,R8,R11", help="ribs in the picture")
    parser.add_argument("--every", type=int, default=7, help="round trip on every n-th frame voxel")
    args = parser.parse_args()
    ct = sitk.ReadImage(str(lidc_path("cxr.nii.gz")))
    t0 = time.perf_counter()
    labels = to_rib_labels(sitk.ReadImage(str(lidc_path("mask.nii.gz"))))
    ribs = ribs_from_label_map(labels)
    print(f"LIDC-IDRI-0001 {ct.GetSize()} spacing {np.round(ct.GetSpacing(), 3).tolist()}: "
          f"{len(ribs.ribs)} ribs from TotalSegmentator labels, centrelines {time.perf_counter() - t0:.1f} s")
    centre = body_centre(ribs.ribs)
    array = sitk.GetArrayViewFromImage(ct)
    print(f"{'rib':>4} {'length mm':>9} {'frame voxels':>14} {'voxels':>9} {'s':>6} {'1:1':>6} "
          f"{'frame rt mm':>11} {'CT rt mm':>9} {'twist deg':>9} {'out cos':>7} {'back s':>6}")
    total_s, total_vox, back_s = 0.0, 0, 0.0
    frames = []
    bone_back = np.zeros(array.shape, np.float32)  # each frame's bone (> BONE_HU) written back onto the CT grid
    for rib in ribs.ribs:
        t0 = time.perf_counter()
        frame = rib_frame(rib, centre)
        if frame is None:
            print(f"{rib.name:>4} too short for a frame")
            continue
        frame.sample(ct, array)
        seconds = time.perf_counter() - t0
        share, frame_err, ct_err = round_trip_mm(frame, ct, args.every)
        t0 = time.perf_counter()
        frame_to_ct(frame, (frame.volume > defaults.BONE_HU).astype(np.float32), ct, bone_back)
        back = time.perf_counter() - t0
        back_s += back
        total_s += seconds
        total_vox += int(np.prod(frame.shape))
        frames.append(frame)
        print(f"{frame.name:>4} {frame.length_mm:9.1f} {'x'.join(map(str, frame.shape)):>14} {np.prod(frame.shape):9d} "
              f"{seconds:6.2f} {share:6.3f} {frame_err:11.2e} {ct_err:9.2e} "
              f"{np.abs(section_twist_deg(frame)).max():9.1e} {np.nanmin(outward_cosine(frame, centre)):7.2f} {back:6.2f}")
    print(f"all {len(frames)} ribs: {total_vox / 1e6:.1f} M frame voxels, build + sampling {total_s:.1f} s, "
          f"write-back {back_s:.1f} s")
    written, bone = bone_back > 0.5, array > defaults.BONE_HU
    rib_bone = bone & (sitk.GetArrayViewFromImage(labels) > 0)
    print(f"bone written back: {written.sum()} voxels, {np.mean(bone[written]):.3f} of them bone in the CT; "
          f"{np.mean(written[rib_bone]):.3f} of the CT's rib bone (TotalSegmentator ribs > {defaults.BONE_HU:.0f} HU) covered")
    if args.png:
        print(f"picture: {picture(frames, args.show.split(','), Path(args.png))}")


if __name__ == "__main__":
    main()
