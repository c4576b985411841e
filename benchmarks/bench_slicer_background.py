"""What the panel's background run costs and how responsive it stays, on real MRML classes.

Prints: in-process Logic time; background time from Segment to nodes; the longest time the
"GUI thread" (this thread: start, each poll, finish) is blocked; Cancel latency (cancel() call to
worker exit) measured mid-run. Uses a marked phantom and the probe checkpoint, so the network part
is tiny and the figures show the module's own overhead.

    python benchmarks/bench_slicer_background.py [--size 192 192 120] [--spacing 1.5 1.5 2.5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "RibFracSeg")]

from slicer_scene import make_scene  # noqa: E402

from RibFracSegLogicLib import probe, selftest  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402
from RibFracSegLogicLib.runner import RUNNING  # noqa: E402

POLL_S = 0.2  # the panel's QTimer interval


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(192, 192, 120))
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.5, 1.5, 2.5))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-slicer-"))
    checkpoint = str(probe.write_probe_checkpoint(work / "probe.pt", patch_size=(64, 64, 64)))
    case = selftest.phantom_case("oblique", n_fractures=6, shape=tuple(args.size), spacing=tuple(args.spacing))
    holder = make_scene()
    volume = selftest.add_case_volume(holder.scene, case)
    logic = RibFracSegLogicBase(holder.scene)
    print(f"CT {case.image.GetSize()} voxels, spacing {case.image.GetSpacing()} mm, oblique storage")

    result, seconds = timed(logic.process, volume, checkpoint=checkpoint, device="cpu")
    print(f"in-process Logic.process: {seconds:.2f} s, {len(result.detections)} fractures")

    options = logic.options(checkpoint, device="cpu")
    start = time.perf_counter()
    run, blocked_start = timed(logic.start_background, volume, options, preload=[probe.MODULE])
    longest_poll = 0.0
    while run.state == RUNNING:
        time.sleep(POLL_S)
        _, seconds = timed(run.poll)
        longest_poll = max(longest_poll, seconds)
    background, blocked_finish = timed(logic.finish_background, volume, run)
    total = time.perf_counter() - start
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in run.stage_seconds.items())
    print(f"background run, Segment to nodes: {total:.2f} s (worker stages: {stages})")
    print(f"GUI thread blocked: start {blocked_start * 1000:.0f} ms, longest poll {longest_poll * 1000:.1f} ms, "
          f"finish (read + nodes) {blocked_finish * 1000:.0f} ms")
    print(f"background detections identical to in-process: {background.detections == result.detections}")

    run = logic.start_background(volume, options, preload=[probe.MODULE])
    while run.state == RUNNING and run.progress[1] == 0:
        run.poll()
        time.sleep(0.01)
    _, latency = timed(run.cancel)
    print(f"cancel mid-run: worker gone after {latency * 1000:.0f} ms (exit code {run.returncode}), "
          f"progress was {run.progress}")


if __name__ == "__main__":
    main()
