"""Make the README's rib-unfolded pictures: a real CT and a phantom with fractures, ribs from
`segment_ribs`, fractures from a `ribfracseg segment` JSON summary (or, for the phantom, its truth).

    ribfracseg segment ../shared/data/real/LIDC-IDRI-0314.nii.gz --out /tmp/seg
    python benchmarks/qc_unfolded.py ../shared/data/real/LIDC-IDRI-0314.nii.gz \
        --detections /tmp/seg/LIDC-IDRI-0314.json --min-confidence 0.8 --name unfolded_lidc0314
    python benchmarks/qc_unfolded.py --phantom 11 --name unfolded_phantom [--detections ...]

Writes `<name>-unfolded.png` and `<name>-qc.png` into --out (default Resources/), quantised to
256 (or fewer) colours so each stays under 400 KB, and prints what the rib step found and where each mark sits.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from PIL import Image

from RibFracSegLib import defaults
from RibFracSegLib.detections import Detection
from RibFracSegLib.io import read_ct
from RibFracSegLib.phantom import detections_from_phantom, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.phantom.dataset import sample_params
from RibFracSegLib.ribs.qc import save_png, write_unfolded_qc
from RibFracSegLib.ribs.unfold import unfold_ribs


def read_detections(path: Path, min_confidence: float) -> list[Detection]:
    data = json.loads(path.read_text())["detections"]
    return [Detection.from_dict(d) for d in data if d["confidence"] >= min_confidence]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct", nargs="?", type=Path)
    parser.add_argument("--phantom", type=int, default=None,
                        help="seed of a realistic 256-matrix thorax phantom (1.5 mm slices) instead of a CT")
    parser.add_argument("--detections", type=Path, default=None, help="ribfracseg segment JSON summary")
    parser.add_argument("--min-confidence", type=float, default=0.0)
    parser.add_argument("--truth-ribs", action="store_true", help="phantom: ribs from the truth, not segment_ribs")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, default=defaults.RESOURCES_DIR)
    args = parser.parse_args()
    case = None
    if args.phantom is not None:
        case = generate_phantom(sample_params(args.phantom, size=256, fov="thorax", orientation="LPS", n_fractures=6,
                                              slice_mm=1.5))
        ct = case.image
    else:
        ct = read_ct(str(args.ct))
    t0 = time.perf_counter()
    if case is not None and args.truth_ribs:
        ribs = rib_labels_from_phantom(case)
    else:
        from RibFracSegLib.ribs import segment_ribs

        ribs = segment_ribs(ct)
    print(f"ribs in {time.perf_counter() - t0:.1f} s: numbering {ribs.numbering}; "
          f"{sorted(r.name for r in ribs.ribs)}; notes {ribs.notes}")
    if args.detections is not None:
        detections = read_detections(args.detections, args.min_confidence)
    else:
        detections = detections_from_phantom(case, ribs) if case is not None else []
    t0 = time.perf_counter()
    unfolded = unfold_ribs(ct, ribs)
    print(f"unfolded {len(unfolded.strips)} ribs in {time.perf_counter() - t0:.2f} s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    files = write_unfolded_qc(ct, ribs, detections, args.out, args.name, unfolded)
    for det in detections:
        mark = files.marks[det.id]
        truth = f" (truth rib {det.rib})" if case is not None and args.detections is None else ""
        where = f"{mark.rib} at {mark.arc_mm:.0f} mm, {mark.distance_mm:.1f} mm off the centreline" if mark else "on no rib"
        print(f"  F{det.id} conf {det.confidence:.2f}: {where}{truth}")
    for path in (files.unfolded_png, files.qc_png):
        rgb = Image.open(path).convert("RGB")
        for colours in (256, 128, 64):  # the README's pictures must stay under 400 KB each
            save_png(rgb.quantize(colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE), path)
            if path.stat().st_size < 400 * 1024:
                break
        print(f"{path} {path.stat().st_size / 1024:.0f} KB, {colours} colours")


if __name__ == "__main__":
    main()
