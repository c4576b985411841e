"""Cases per hour for a cohort: the same 8 phantoms serially, then with `--workers 2` (local Dask).

Runs `ribfracseg segment` exactly as a user would (a fresh process per mode, the shipped model,
fresh output folders) and prints wall-clock seconds, cases per hour and whether both modes wrote
the same detections. Run it on a quiet machine: other processes on the cores change the figure.

    python benchmarks/bench_cohort.py [--n 8] [--size 256] [--workers 2] [--data .cache/cohort]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_mode(data: Path, out: Path, workers: int) -> float:
    """Seconds for one `ribfracseg segment` run over the folder (outputs cleared first)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "RibFracSegLib", "segment", str(data), "--out", str(out)]
    if workers:
        cmd += ["--workers", str(workers)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def detections(out: Path) -> dict[str, list]:
    return {p.stem: [(d["id"], round(d["confidence"], 5), d["voxel_count"]) for d in
                     json.loads(p.read_text())["detections"]] for p in sorted(out.glob("*.json"))}


def main() -> None:
    from RibFracSegLib.phantom.dataset import write_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="phantoms (default 8)")
    parser.add_argument("--size", type=int, default=256, help="in-plane matrix of the phantoms (default 256)")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers of the parallel run (default 2)")
    parser.add_argument("--data", default=str(ROOT / ".cache" / "cohort"))
    args = parser.parse_args()

    data = Path(args.data) / f"phantoms-{args.n}-{args.size}"
    if not (data / "ribfrac-test-info.csv").is_file():
        write_dataset(data, args.n, seed=4242, split="test", size=args.size)
    results = {}
    for workers in (0, args.workers):
        out = Path(args.data) / f"out-workers{workers}"
        seconds = run_mode(data, out, workers)
        results[workers] = (seconds, detections(out))
        label = "serial" if workers == 0 else f"--workers {workers}"
        print(f"{label:>12}: {args.n} cases in {seconds:.0f} s = {args.n * 3600 / seconds:.1f} cases per hour",
              flush=True)
    serial, parallel = results[0][0], results[args.workers][0]
    print(f"speed-up {serial / parallel:.2f}x; same detections in both modes: {results[0][1] == results[args.workers][1]}")


if __name__ == "__main__":
    main()
