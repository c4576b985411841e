"""Stability of the second stage: the largest change of its fracture probability when each validation
detection's centre moves by +-0.5 mm (and 0.1 mm), per checkpoint. Validation candidates only
(the corpus's val/: CRLM-CT-1004 and its simulated copies, seed-303 phantoms), never the test CTs.

    python benchmarks/bench_stage2_stability.py --corpus .cache/stage2c CKPT [CKPT ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from RibFracSegLib.candidates.classifier import load_classifier
    from RibFracSegLib.candidates.harvest import Harvest
    from RibFracSegLib.candidates.stability import Stability, stability
    from RibFracSegLib.checkpoint import load_checkpoint
    from RibFracSegLib.io import read_ct

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--corpus", required=True, help="harvested corpus folder (val/ inside)")
    parser.add_argument("--shifts", nargs="*", type=float, default=[0.1, 0.5])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    harvests = [Harvest.from_dict(json.loads(p.read_text())) for p in sorted((Path(args.corpus) / "val").glob("*.json"))]
    harvests = [h for h in harvests if h.candidates]
    images = {h.case: read_ct(h.image) for h in harvests}
    for path in args.checkpoints:
        spec = load_classifier(load_checkpoint(path).candidate_classifier)
        for shift in args.shifts:
            parts = [stability(spec.model, images[h.case], [c.center_lps for c in h.candidates], spec.voxels,
                               spec.spacing_mm, shift) for h in harvests]
            s = Stability(np.concatenate([p.probabilities for p in parts]))
            print(f"{path}: +-{shift} mm over {len(s.change)} validation detections: largest change "
                  f"{s.change.max():.3f}, 99th percentile {np.percentile(s.change, 99):.3f}, mean {s.change.mean():.4f}; "
                  f"decisions that flip at the floor {spec.min_probability:.2f}: {s.flips(spec.min_probability)}",
                  flush=True)
            print("    largest per case: " + ", ".join(f"{h.case} {p.change.max():.3f} (n {len(p.change)})"
                                                     for h, p in zip(harvests, parts)), flush=True)


if __name__ == "__main__":
    main()
