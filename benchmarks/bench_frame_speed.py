"""Benchmark (issue 24): what the rib-frame path's own stages cost on one real chest CT, per setting.

The frame network (seeded random fracnet_unet c=8, `bench_inference.frame_checkpoint`: the speed of a
trained one is the same) is run over every window of every rib in each precision, window overlap along
the arc and batch size asked for; also what `auto` (`inference._Runner`, `precision.auto_precision`)
picks on this CPU and how long it took to pick, the frames' sampling (building the frames, then
`RibFrame.sample`) and the coverage step (`frame_coverage.frames_reach` on the rule's bone). Ribs are
segmented once, untimed here (bench_inference --frames times them).

    python benchmarks/bench_frame_speed.py [--case lidc|lidc0314] [--precisions fp32,bf16]
        [--overlaps 0.25,0.5] [--batches 1,2,4,8] [--threads 2]

--fallback: only the fallback's cost, before and after issue 24's cut: rib-labelled bone in no frame (mm^3, pieces)
and the patches computed for it, with the training frames' run-on (RIB_FRAME_END_MM) and the overlapped grid
on all of it (before) against the inference run-on (`frame_inference.frame_end_mm`), without the labelled bone
beside its rib's frame (`frame_coverage.beside_own_frame`), and `window_cover.cover_windows` (after); each
step's share printed; then with R7 left out (an incomplete set: all bone in no frame); no network runs.

    python benchmarks/bench_frame_speed.py --fallback [--case lidc|lidc0314|all]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import ensure_case, model_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["lidc", "lidc0314", "all"], default="lidc")
    parser.add_argument("--fallback", action="store_true", help="fallback patches and uncovered rib bone, before/after")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--overlaps", default="0.25,0.5")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.fallback:
        for case in (("lidc", "lidc0314") if args.case == "all" else (args.case,)):
            fallback_before_after(case)
        return
    if args.case == "all":
        parser.error("--case all goes with --fallback only")
    import numpy as np
    import SimpleITK as sitk
    import torch
    from RibFracSegLib import defaults
    from RibFracSegLib.frame_coverage import bone_mask, frames_reach
    from RibFracSegLib.frame_inference import frame_end_mm, frame_geometry
    from RibFracSegLib.frame_windows import frame_values, frame_windows
    from RibFracSegLib.inference import _prepared_model, _Runner, fracture_cells
    from RibFracSegLib.orientation import canonical_volume
    from RibFracSegLib.precision import auto_precision
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.frame_build import rib_frames
    from RibFracSegLib.sliding_window import importance_map

    torch.set_num_threads(args.threads)
    image = sitk.ReadImage(str(ensure_case(args.case)))
    array = sitk.GetArrayViewFromImage(image)
    ribs = segment_ribs(image)
    ckpt = model_checkpoint("frame8")
    voxel, half = frame_geometry(ckpt)
    patch = tuple(ckpt.patch_size)
    hu_window = ckpt.preprocessing["hu_window"]
    t = time.perf_counter()
    frames = rib_frames(ribs.ribs, voxel_mm=voxel, half_mm=half, end_mm=frame_end_mm(ckpt))
    built = time.perf_counter() - t
    t = time.perf_counter()
    volumes = [frame.sample(image, array) for frame in frames]
    sampled = time.perf_counter() - t
    print(f"[{args.case}] {len(frames)} ribs, {sum(f.shape[0] for f in frames)} sections: frames built {built:.2f} s, "
          f"sampled {sampled:.2f} s ({sum(v.size for v in volumes) / 1e6:.1f} M voxels)", flush=True)
    model = _prepared_model(ckpt, torch.device("cpu"))
    weights = importance_map(patch, "gaussian")
    for overlap in (float(o) for o in args.overlaps.split(",")):
        plans = [frame_windows(f.shape, patch, overlap) for f in frames]
        n = sum(len(b) for b in plans)
        runner = _Runner(model, torch.device("cpu"), "auto", auto_precision(ckpt, torch.device("cpu")))
        t = time.perf_counter()
        frame_values(frames[0].volume, plans[0][:1], runner, patch, hu_window, weights, 1, lambda k: None, None, 0.0)
        print(f"[{args.case}] auto picks {runner.precision} in {time.perf_counter() - t:.2f} s "
              f"(first-batch seconds {({k: round(v, 3) for k, v in runner.seconds.items()})}, "
              f"errors {runner.errors}, {runner.auto.reason})", flush=True)
        for precision in args.precisions.split(","):
            fixed = _Runner(model, torch.device("cpu"), precision)
            frame_values(frames[0].volume, plans[0][:2], fixed, patch, hu_window, weights, 2, lambda k: None, None, 0.0)  # warm
            for batch in (int(b) for b in args.batches.split(",")):
                t = time.perf_counter()
                for frame, boxes in zip(frames, plans):
                    frame_values(frame.volume, boxes, fixed, patch, hu_window, weights, batch, lambda k: None, None, 0.0)
                s = time.perf_counter() - t
                print(f"[{args.case}] network overlap {overlap} {precision} batch {batch}: {n} windows, {s:.2f} s "
                      f"({1000 * s / n:.1f} ms/window)", flush=True)
    volume = canonical_volume(image)
    cells, rule = fracture_cells(volume, ribs, defaults.BONE_HU)
    t = time.perf_counter()
    kji = np.argwhere(volume.to_input(bone_mask(volume, cells, defaults.BONE_HU)))
    covered = frames_reach(frames, image, kji)
    print(f"[{args.case}] coverage: {len(kji)} bone voxels (rule {rule}), {covered.mean():.1%} in a frame, "
          f"{time.perf_counter() - t:.2f} s", flush=True)


def fallback_before_after(case: str) -> None:
    """Rib-labelled bone no frame reaches and the fallback patches it costs, per run-on (training's, inference's):
    by the grid and by cover windows, on all labelled bone and without what lies beside its rib's frame (the
    inference run-on, beside-frame bone left out, cover windows: what `frame_probability` does)."""
    import numpy as np
    import SimpleITK as sitk
    from scipy import ndimage
    from RibFracSegLib import defaults
    import dataclasses
    from RibFracSegLib.frame_coverage import bone_mask, fallback_bone, fallback_margin, frames_reach
    from RibFracSegLib.frame_inference import frame_end_mm
    from RibFracSegLib.inference import fracture_cells
    from RibFracSegLib.orientation import canonical_volume
    from RibFracSegLib.preprocess import block_any
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.frame_build import rib_frames
    from RibFracSegLib.shipped import shipped_model
    from RibFracSegLib.checkpoint import load_checkpoint
    from RibFracSegLib.sliding_window import PatchGrid, keep_mask
    from RibFracSegLib.window_cover import cover_windows

    image = sitk.ReadImage(str(ensure_case(case)))
    ribs = segment_ribs(image)
    ckpt = model_checkpoint("frame8")
    patch = tuple(load_checkpoint(shipped_model("fracture_ct")).patch_size)
    volume = canonical_volume(image)
    cells, rule = fracture_cells(volume, ribs, defaults.BONE_HU)
    kji = np.argwhere(volume.to_input(bone_mask(volume, cells, defaults.BONE_HU)))
    grid = PatchGrid.build(volume.array.shape, patch, 0.5)
    mm3 = float(np.prod(image.GetSpacing()))
    for end_mm in (defaults.RIB_FRAME_END_MM, defaults.RIB_FRAME_INFERENCE_END_MM):
        frames = rib_frames(ribs.ribs, voxel_mm=ckpt.preprocessing["frame_voxel_mm"],
                            half_mm=ckpt.preprocessing["frame_half_mm"], end_mm=end_mm)
        uncovered = np.zeros(sitk.GetArrayViewFromImage(image).shape, bool)
        uncovered[tuple(kji[~frames_reach(frames, image, kji)].T)] = True
        labelled = volume.to_canonical(fallback_bone(uncovered, ribs))
        examined = volume.to_canonical(fallback_bone(uncovered, ribs, frames, image))
        t = time.perf_counter()
        boxes = cover_windows(np.argwhere(examined), examined.shape, patch, fallback_margin(patch))
        cover_s = time.perf_counter() - t
        counts = [sum(keep_mask(grid, block_any(m))) if m.any() else 0 for m in (labelled, examined)]
        labelled_cover = len(cover_windows(np.argwhere(labelled), examined.shape, patch, fallback_margin(patch)))
        print(f"[{case}] run-on {end_mm:.0f} mm ({sum(f.shape[0] for f in frames)} sections), rule {rule}: "
              f"{uncovered.sum() * mm3:.0f} mm^3 of bone in no frame; labelled rib {labelled.sum() * mm3:.0f} mm^3 in "
              f"{ndimage.label(labelled, np.ones((3, 3, 3)))[1]} pieces (grid {counts[0]} patches, cover "
              f"{labelled_cover}), of it beside its rib's frame {(labelled.sum() - examined.sum()) * mm3:.0f} mm^3; "
              f"the fallback examines {examined.sum() * mm3:.0f} mm^3: grid {counts[1]} patches, cover {len(boxes)} "
              f"windows ({cover_s:.2f} s to place)", flush=True)
    # a rib not found (R7 left out): the set is incomplete, all bone in the body in no frame goes to the fallback
    partial = dataclasses.replace(ribs, ribs=[r for r in ribs.ribs if r.name != "R7"])
    cells, rule = fracture_cells(volume, partial, defaults.BONE_HU)
    kji = np.argwhere(volume.to_input(bone_mask(volume, cells, defaults.BONE_HU)))
    frames = rib_frames(partial.ribs, voxel_mm=ckpt.preprocessing["frame_voxel_mm"],
                        half_mm=ckpt.preprocessing["frame_half_mm"], end_mm=frame_end_mm(ckpt))
    uncovered = np.zeros(sitk.GetArrayViewFromImage(image).shape, bool)
    uncovered[tuple(kji[~frames_reach(frames, image, kji)].T)] = True
    examined = volume.to_canonical(fallback_bone(uncovered, partial, frames, image))
    t = time.perf_counter()
    boxes = cover_windows(np.argwhere(examined), examined.shape, patch, fallback_margin(patch))
    print(f"[{case}] R7 left out, rule {rule[:24]}...: the fallback examines {examined.sum() * mm3 / 1000:.1f} cm^3: "
          f"grid {sum(keep_mask(grid, block_any(examined)))} patches, cover {len(boxes)} windows "
          f"({time.perf_counter() - t:.2f} s to place)", flush=True)


if __name__ == "__main__":
    main()
