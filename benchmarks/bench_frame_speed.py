"""Benchmark (issue 24): what the rib-frame path's own stages cost on one real chest CT, per setting.

The frame network (seeded random fracnet_unet c=8, `bench_inference.frame_checkpoint`: the speed of a
trained one is the same) is run over every window of every rib in each precision, window overlap along
the arc and batch size asked for; also what `auto` (`inference._Runner`, `precision.auto_precision`)
picks on this CPU and how long it took to pick, the frames' sampling (building the frames, then
`RibFrame.sample`) and the coverage step (`frame_inference.frames_reach` on the rule's bone). Ribs are
segmented once, untimed here (bench_inference --frames times them).

    python benchmarks/bench_frame_speed.py [--case lidc|lidc0314] [--precisions fp32,bf16]
        [--overlaps 0.25,0.5] [--batches 1,2,4,8] [--threads 2]
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
    parser.add_argument("--case", choices=["lidc", "lidc0314"], default="lidc")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--overlaps", default="0.25,0.5")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import numpy as np
    import SimpleITK as sitk
    import torch
    from RibFracSegLib import defaults
    from RibFracSegLib.frame_inference import _frame_values, bone_mask, frame_geometry, frame_windows, frames_reach
    from RibFracSegLib.inference import _prepared_model, _Runner, fracture_cells
    from RibFracSegLib.orientation import canonical_volume
    from RibFracSegLib.precision import auto_precision
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.frame import rib_frames
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
    frames = rib_frames(ribs.ribs, voxel_mm=voxel, half_mm=half)
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
        _frame_values(frames[0], plans[0][:1], runner, patch, hu_window, weights, 1, lambda k: None, None)
        print(f"[{args.case}] auto picks {runner.precision} in {time.perf_counter() - t:.2f} s "
              f"(first-batch seconds {({k: round(v, 3) for k, v in runner.seconds.items()})}, "
              f"errors {runner.errors}, {runner.auto.reason})", flush=True)
        for precision in args.precisions.split(","):
            fixed = _Runner(model, torch.device("cpu"), precision)
            _frame_values(frames[0], plans[0][:2], fixed, patch, hu_window, weights, 2, lambda k: None, None)  # warm
            for batch in (int(b) for b in args.batches.split(",")):
                t = time.perf_counter()
                for frame, boxes in zip(frames, plans):
                    _frame_values(frame, boxes, fixed, patch, hu_window, weights, batch, lambda k: None, None)
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


if __name__ == "__main__":
    main()
