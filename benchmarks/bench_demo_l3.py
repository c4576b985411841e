"""L3 on the demo's own phantoms: the checked L3 the demo prints (l3.check.locate_l3_checked, as
`ribfracseg l3`) and the MIP network alone, against the phantom's truth, on every storage order.

    python benchmarks/bench_demo_l3.py [--seeds 655251268 7 9 13 1 3 2 19 4 5] [--size 512]

Default seeds: 655251268 (the oblique phantom issue 27 reports) and nine more chosen so the demo's
draws (`cli.demo.demo_params`) cover LPS, RAS, LPI and oblique storage. Per phantom: storage order,
slice spacing, the checked L3's distance to the true L3 body centre along the superior axis, its
source and review flag, the network alone's distance (inf: "not in view"), seconds of
locate_l3_checked. Ends with the worst checked error and how many are within 10 mm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from RibFracSegLib.cli.demo import demo_params
from RibFracSegLib.l3.check import locate_l3_checked
from RibFracSegLib.phantom import generate_phantom

SEEDS = (655251268, 7, 9, 13, 1, 3, 2, 19, 4, 5)
LIMIT_MM = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    print(f"{'seed':>10} {'stored':>8} {'slice':>6} {'checked mm':>11} {'source':>14} {'review':>7} "
          f"{'network mm':>11} {'s':>6}  why", flush=True)
    checked, network = [], []
    for seed in args.seeds:
        params = demo_params(seed, args.size)
        case = generate_phantom(params)
        t0 = time.perf_counter()
        l3 = locate_l3_checked(case.image)
        seconds = time.perf_counter() - t0
        truth_z = case.l3.center_lps[2]
        err = abs(l3.z_mm - truth_z) if l3.in_view else float("inf")
        net = abs(l3.network.z_mm - truth_z) if l3.network.in_view else float("inf")
        checked.append(err)
        network.append(net)
        print(f"{seed:>10} {params.orientation:>8} {params.spacing[2]:>6.2f} {err:>11.1f} {l3.source:>14} "
              f"{str(l3.review):>7} {net:>11.1f} {seconds:>6.1f}  {l3.review_reason}", flush=True)
    within = sum(e <= LIMIT_MM for e in checked)
    print(f"checked L3: {within} of {len(checked)} within {LIMIT_MM:.0f} mm of the truth, worst "
          f"{max(checked):.1f} mm, median {np.median(checked):.1f} mm; network alone: "
          f"{sum(e <= LIMIT_MM for e in network)} of {len(network)} within {LIMIT_MM:.0f} mm")
    return 0 if within == len(checked) else 1


if __name__ == "__main__":
    raise SystemExit(main())
