"""Render the extension's screenshot from a real run: the module's Logic on a synthetic phantom.

    python Resources/Screenshots/make_screenshot.py [--out Resources/Screenshots/RibFracSeg-results.png]

Runs RibFracSegLogicBase.process (shipped fracture and L3 models) on a thorax+abdomen phantom in a
headless slicer-core scene, saves the results as Slicer does (.seg.nrrd, .mrk.json, .tsv), then draws
slices of the CT with the segments' outlines and the points read back from those saved files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "RibFracSeg-results.png"
WINDOW_HU = (-400.0, 1200.0)  # bone-friendly window for the picture


def run_and_save(folder: Path, seed: int) -> dict[str, Path]:
    """Phantom -> module Logic -> files, exactly as the console batch writes them."""
    sys.path[:0] = [str(REPO / "RibFracSeg"), str(REPO), str(REPO / "tests")]
    from slicer_scene import make_scene

    from RibFracSegLib.io import write_image
    from RibFracSegLib.phantom import PhantomParams, generate_phantom
    from RibFracSegLogicLib.batch import save_results
    from RibFracSegLogicLib.logic import RibFracSegLogicBase
    from RibFracSegLogicLib.volumes import volume_node_from_image

    case = generate_phantom(PhantomParams(shape=(170, 170, 190), spacing=(2.2, 2.2, 2.5), fov="thorax_abdomen",
                                          n_fractures=5, seed=seed))
    holder = make_scene()
    volume = volume_node_from_image(holder.scene, case.image, "phantom")
    result = RibFracSegLogicBase(holder.scene).process(volume, device="cpu", l3=True, height_m=1.75)
    files = save_results(holder.scene, result.nodes, folder, "phantom")
    files["ct"] = write_image(case.image, folder / "phantom.nrrd")
    print(f"{len(result.detections)} detections ({len(case.fractures)} true fractures); "
          f"L3 in view: {result.output.l3.in_view}")
    return files


def segments_on_ct(seg_path: Path, ct: sitk.Image) -> list[tuple[str, tuple[float, float, float], np.ndarray]]:
    """(name, colour, mask on the CT grid [k, j, i]) for every segment of a saved .seg.nrrd."""
    seg = sitk.ReadImage(str(seg_path))
    layers = [sitk.VectorIndexSelectionCast(seg, c) for c in range(seg.GetNumberOfComponentsPerPixel())] \
        if seg.GetNumberOfComponentsPerPixel() > 1 else [seg]
    layers = [sitk.Resample(layer, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0) for layer in layers]
    out, index = [], 0
    while seg.HasMetaDataKey(f"Segment{index}_Name"):
        meta = {key: seg.GetMetaData(f"Segment{index}_{key}") for key in ("Name", "Color", "LabelValue", "Layer")}
        layer = sitk.GetArrayViewFromImage(layers[int(meta["Layer"])])
        out.append((meta["Name"], tuple(float(v) for v in meta["Color"].split()), layer == int(meta["LabelValue"])))
        index += 1
    return out


def points_ijk(markups_path: Path, ct: sitk.Image) -> list[tuple[str, np.ndarray]]:
    """(label, continuous index i, j, k) of each control point of a saved .mrk.json (LPS or RAS on disk)."""
    markup = json.loads(markups_path.read_text())["markups"][0]
    flip = np.array([-1.0, -1.0, 1.0]) if markup.get("coordinateSystem", "LPS") == "RAS" else np.ones(3)
    return [(p["label"], np.array(ct.TransformPhysicalPointToContinuousIndex(tuple(np.multiply(p["position"], flip)))))
            for p in markup["controlPoints"]]


def render(files: dict[str, Path], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct = sitk.ReadImage(str(files["ct"]))
    hu = sitk.GetArrayFromImage(ct)  # [k, j, i]; phantom stored LPS: k inferior->superior
    segments = segments_on_ct(files["segmentation"], ct)
    fractures = points_ijk(files["points"], ct)
    l3 = points_ijk(files["l3_point"], ct) if "l3_point" in files else []
    sx, sy, sz = ct.GetSpacing()
    largest = sorted(segments, key=lambda s: -int(s[2].sum()))[:2]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), facecolor="black")
    for ax, (label, _, shown) in zip(axes[:2], largest):  # axial slices through the two largest fractures
        k = int(round(np.argwhere(shown)[:, 0].mean()))
        ax.imshow(hu[k], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], aspect=sy / sx)
        for name, colour, mask in segments:
            if mask[k].any():
                ax.contour(mask[k], levels=[0.5], colors=[colour], linewidths=1.6)
        for other, p in fractures:
            if abs(p[2] - k) < 1.5:
                ax.plot(p[0], p[1], "+", color="yellow", ms=14, mew=2)
                ax.annotate(other, (p[0], p[1]), xytext=(6, -8), textcoords="offset points", color="yellow", fontsize=10)
        ax.set_title(f"Axial, at {label}", color="white")
    j = int(round(np.mean([p[1] for _, p in fractures]))) if fractures else hu.shape[1] // 2
    if l3:
        j = int(round(l3[0][1][1]))
    coronal = hu[:, j, :]
    ax = axes[2]
    ax.imshow(coronal, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], origin="lower", aspect=sz / sx)
    for name, colour, mask in segments:  # fractures anywhere in depth, projected onto the coronal view
        projected = mask.any(axis=1)
        if projected.any():
            ax.contour(projected, levels=[0.5], colors=[colour], linewidths=1.2)
    for label, p in l3:
        ax.axhline(p[2], color="cyan", lw=1, ls="--")
        ax.plot(p[0], p[2], "o", color="cyan", ms=8)
        ax.annotate("L3", (p[0], p[2]), xytext=(8, 6), textcoords="offset points", color="cyan", fontsize=12)
    ax.set_title("Coronal: all fractures projected, L3 level", color="white")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"RibFracSeg on a synthetic phantom: {len(fractures)} detections of the shipped model (segments, "
                 "points with confidence) and L3, drawn from the run's saved .seg.nrrd / .mrk.json", color="white")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, facecolor="black")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=424243)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="RibFracSeg-screenshot-") as folder:
        out = render(run_and_save(Path(folder), args.seed), args.out)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
