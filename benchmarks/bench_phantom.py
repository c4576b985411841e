"""Print how long one 512x512x300 phantom at 0.7x0.7x1.25 mm takes to generate (aim: < 30 s here).

    python benchmarks/bench_phantom.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from RibFracSegLib.phantom import PhantomParams, generate_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for orientation in ("LPS", "oblique"):
        times = []
        for seed in range(args.repeat):
            t0 = time.perf_counter()
            case = generate_phantom(PhantomParams(shape=(512, 512, 300), spacing=(0.7, 0.7, 1.25), fov="thorax",
                                                  n_fractures=6, orientation=orientation, seed=seed))
            times.append(time.perf_counter() - t0)
        print(f"512x512x300 at 0.7x0.7x1.25 mm, {orientation:8s}: "
              f"min {min(times):.1f} s, median {sorted(times)[len(times) // 2]:.1f} s over {args.repeat} "
              f"({len(case.fractures)} fractures)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
