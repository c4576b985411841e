"""Picture a phantom beside the real LIDC chest CT: frontal MIP and three axial slices of each.

    python benchmarks/qc_phantom_vs_real.py [--out Resources/phantom_vs_lidc.png] [--seed 3]

The phantom copies the real CT's grid (512x512x133, 0.703x0.703x2.5 mm) so the two rows compare
like for like; both go through the same head-up MIP code as the L3 locator.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import lidc_path  # noqa: E402

from RibFracSegLib.orientation import canonical_image  # noqa: E402
from RibFracSegLib.l3.projections import compute_projections  # noqa: E402
from RibFracSegLib.phantom import PhantomParams, generate_phantom  # noqa: E402

WINDOW = (-1000, 800)


def views(image: sitk.Image) -> tuple[np.ndarray, list[np.ndarray]]:
    frontal = compute_projections(image).frontal
    canon = sitk.GetArrayFromImage(canonical_image(image)).astype(np.float32)  # [inferior->superior, A->P, R->L]
    canon[canon < -1024] = -1024  # outside the reconstruction circle
    nk = canon.shape[0]
    axial = [canon[int(f * (nk - 1))] for f in (0.8, 0.55, 0.3)]
    return frontal, axial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Resources" / "phantom_vs_lidc.png"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    real = sitk.ReadImage(str(lidc_path()))
    phantom = generate_phantom(PhantomParams(shape=real.GetSize(), spacing=real.GetSpacing(), fov="thorax",
                                             n_fractures=4, orientation="RAS", outside_hu=-2048, seed=args.seed)).image
    rows = [("phantom (synthetic)", phantom), ("LIDC-IDRI-0001 (real)", real)]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.4), gridspec_kw={"width_ratios": [1.1, 1, 1, 1]})
    for r, (name, image) in enumerate(rows):
        frontal, axial = views(image)
        axes[r, 0].imshow(frontal, cmap="gray", vmin=0, vmax=0.6)
        axes[r, 0].set_title(f"{name}: frontal MIP", fontsize=10)
        for c, sl in enumerate(axial, 1):
            axes[r, c].imshow(sl, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
            axes[r, c].set_title(f"{name}: axial {['upper', 'middle', 'lower'][c - 1]}", fontsize=10)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle("Same grid (512x512x133, 0.70x0.70x2.5 mm); MIP clipped to [100, 1500] HU, slices W/L "
                 f"{WINDOW[1] - WINDOW[0]}/{(WINDOW[0] + WINDOW[1]) // 2}; patient right on image left", fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=72)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
