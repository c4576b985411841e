"""Print seconds to unfold the 24 ribs of one CT (aim: <= 5 s on this CPU), and to write its QC PNGs.

    python benchmarks/bench_unfold.py [--repeat 3] [--real ../shared/data/real/LIDC-IDRI-0314.nii.gz]

Phantoms at a clinical grid (512x512x300, 0.7x0.7x1.25 mm; LPS and oblique storage) are unfolded
from their truth ribs (`rib_labels_from_phantom`). With --real, the CT's ribs come from
`segment_ribs` (timed apart) when the library has it. The rib step is not part of the figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from RibFracSegLib.phantom import PhantomParams, detections_from_phantom, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.ribs.qc import write_unfolded_qc
from RibFracSegLib.ribs.unfold import unfold_ribs


def timed(fn, repeat: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), sorted(times)[len(times) // 2], out


def report(label: str, ct, ribs, detections, repeat: int) -> None:
    best, median, unfolded = timed(lambda: unfold_ribs(ct, ribs), repeat)
    with tempfile.TemporaryDirectory() as tmp:
        qc_best, _, _ = timed(lambda: write_unfolded_qc(ct, ribs, detections, tmp, "bench", unfolded), 1)
    print(f"{label}: unfold {len(unfolded.strips)} ribs min {best:.2f} s, median {median:.2f} s over {repeat}; "
          f"picture {unfolded.image.shape[1]}x{unfolded.image.shape[0]} px at {unfolded.pixel_mm} mm; "
          f"QC PNGs (marks + frontal view) {qc_best:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--real", type=Path, default=None, help="a real CT; needs RibFracSegLib.ribs.segment_ribs")
    args = parser.parse_args()
    for orientation in ("LPS", "oblique"):
        case = generate_phantom(PhantomParams(shape=(512, 512, 300), spacing=(0.7, 0.7, 1.25), fov="thorax",
                                              n_fractures=6, orientation=orientation, seed=0))
        ribs = rib_labels_from_phantom(case)
        report(f"phantom 512x512x300 0.7x0.7x1.25 mm {orientation:8s}", case.image, ribs,
               detections_from_phantom(case, ribs), args.repeat)
    if args.real is not None:
        from RibFracSegLib.io import read_ct
        from RibFracSegLib import ribs as ribs_pkg

        if not hasattr(ribs_pkg, "segment_ribs"):
            print("--real: this checkout has no segment_ribs yet; skipped")
        else:
            ct = read_ct(str(args.real))
            t0 = time.perf_counter()
            ribs = ribs_pkg.segment_ribs(ct)
            print(f"{args.real.name}: segment_ribs {time.perf_counter() - t0:.1f} s (not in the unfold figure), "
                  f"{len(ribs.ribs)} ribs")
            report(f"{args.real.name} {ct.GetSize()}", ct, ribs, [], args.repeat)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
