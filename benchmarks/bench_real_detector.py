"""Two fracture checkpoints on the same held-out cases, one table (issue 24's item 5 and its "Done
means"): fractures simulated into the held-out real LIDC-IDRI-0314 (recall overall and per type and
FP/scan at each checkpoint's own operating point, recall at 1 FP/scan off the FROC, type macro-F1),
FP/scan on every real CT (no known fracture) and their mean, held-out phantoms (FROC, macro-F1).
Each figure for the first stage alone and with the candidate classifier (what `segment` ships).
The sets and the cached first stage: `detector_sets.py`.

    python benchmarks/bench_real_detector.py --checkpoint A.pt [--against B.pt] [--sets ...] [--cases ...]

B defaults to the shipped default (`shipped_model("fracture")`); --checkpoint defaults to it too (then
one column pair). --cases NAME ... runs only those cases (a quick end-to-end check; sets without one are left out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detector_sets import STAGES, labelled_sets, real_cases, score_set  # noqa: E402

TYPES = ("Displaced", "Nondisplaced", "Buckle", "Segmental")
STAGE_NAMES = {"stage1": "1st", "stage2": "+cls"}


def column_scores(tag: str, path: str, set_names: list[str], only, log) -> dict:
    from RibFracSegLib.candidates.classifier import load_classifier
    from RibFracSegLib.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    spec = load_classifier(ckpt.candidate_classifier)
    space = ckpt.preprocessing.get("space", "ct")
    log(f"{tag}: {path}: {ckpt.arch} {ckpt.hparams}, {space}, thresholds {ckpt.thresholds}; candidate classifier: "
        f"{'floor %.2f' % spec.min_probability if spec else 'none'}")
    if space == "rib_frame":
        log(f"  note: {tag}'s frame detections go through {'its classifier' if spec else 'no classifier'}, its "
            "fallback's through the fallback's (first_stage.second_stage), as `segment` does")
    labelled = labelled_sets(set_names)
    scores = {}
    for name in ("simulated", "real", "phantoms"):  # item 5's evidence first
        if name == "real" and "real" in set_names:
            scores[name] = score_set(tag, "real", real_cases(), None, ckpt, spec, only, log)
        elif name in labelled:
            gt = labelled[name]
            scores[name] = score_set(tag, name, [(p.name.replace("-image.nii.gz", ""), p)
                                                 for p in sorted(gt.glob("*-image.nii.gz"))], gt, ckpt, spec, only, log)
    return {name: score for name, score in scores.items() if score is not None}


def ratio(found: int, total: int) -> str:
    return f"{found / total:.2f} ({found}/{total})" if total else "-"


def rows_for(scores: dict) -> list[tuple[str, list[str]]]:
    """(row label, one cell per stage) of one checkpoint."""
    rows: list[tuple[str, list[str]]] = []

    def add(label, cell):
        rows.append((label, [cell(s) for s in STAGES]))

    if "simulated" in scores:
        sim = scores["simulated"]
        r = sim.reports["stage1"]
        head = f"0314 simulated ({r.n_scans} scans, {r.n_gt} fractures)"
        add(f"{head}: recall at operating point",
            lambda s: ratio(sum(c["hits_iou_gt_0.2"] for c in sim.reports[s].per_case), sim.reports[s].n_gt))
        for t in TYPES:
            add(f"  recall {t.lower()}", lambda s, t=t: ratio(*sim.by_type[s][t]))
        add("  FP/scan at operating point", lambda s: f"{sim.reports[s].fp_per_scan[0]:.2f}")
        add("  recall at 1 FP/scan (FROC)", lambda s: f"{sim.reports[s].key_recall[1]:.3f}")
        add("  FROC", lambda s: f"{sim.reports[s].froc:.3f}")
        add("  type macro-F1", lambda s: f"{sim.reports[s].f1_total:.3f}")
    if "real" in scores:
        real = scores["real"]
        cases = list(real.counts["stage1"])
        for case in cases:
            add(f"FP {case}", lambda s, c=case: str(real.counts[s][c]))
        add(f"FP/scan mean over {len(cases)} real CTs", lambda s: f"{np.mean(list(real.counts[s].values())):.2f}")
        others = [c for c in cases if c != "LIDC-IDRI-0314"]
        if others and len(others) < len(cases):
            add("  ... without LIDC-IDRI-0314", lambda s: f"{np.mean([real.counts[s][c] for c in others]):.2f}")
        add("  first stage s per real CT", lambda s: f"{np.mean(list(real.seconds.values())):.1f}")
    if "phantoms" in scores:
        ph = scores["phantoms"]
        r = ph.reports["stage1"]
        add(f"phantoms ({r.n_scans} scans, {r.n_gt} fractures): FROC", lambda s: f"{ph.reports[s].froc:.3f}")
        add("  recall at operating point", lambda s: f"{ph.reports[s].recall[0]:.3f}")
        add("  FP/scan at operating point", lambda s: f"{ph.reports[s].fp_per_scan[0]:.2f}")
        add("  type macro-F1", lambda s: f"{ph.reports[s].f1_total:.3f}")
    return rows


def table(columns: dict[str, dict]) -> str:
    per = {tag: rows_for(scores) for tag, scores in columns.items()}
    labels = [label for label, _ in next(iter(per.values()))]
    heads = [f"{tag} {STAGE_NAMES[s]}" for tag in per for s in STAGES]
    width = max(len(x) for x in labels) + 2
    cells = [[c for tag in per for c in per[tag][i][1]] for i in range(len(labels))]  # labels repeat across sets
    cw = max(14, *(len(h) for h in heads), *(len(c) for row in cells for c in row)) + 2
    lines = [" " * width + "".join(h.rjust(cw) for h in heads)]
    lines += [label.ljust(width) + "".join(c.rjust(cw) for c in row) for label, row in zip(labels, cells)]
    return "\n".join(lines)


def main() -> None:
    import torch

    from RibFracSegLib.shipped import shipped_model

    default = str(shipped_model("fracture"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=default, help="checkpoint A (default: the shipped default)")
    parser.add_argument("--against", default=default, help="checkpoint B on the same cases (default: the shipped default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", nargs="*", default=["simulated", "real", "phantoms"],
                        choices=["simulated", "real", "phantoms"])
    parser.add_argument("--cases", nargs="*", default=None, help="only these cases (a quick end-to-end check)")
    parser.add_argument("--only", choices=["A", "B"], help="run one checkpoint only (fill its cache)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    log = lambda m: print(m, flush=True)  # noqa: E731
    paths = {"A": args.checkpoint} if Path(args.checkpoint) == Path(args.against) else \
        {"A": args.checkpoint, "B": args.against}
    if args.only:
        paths = {args.only: paths.get(args.only, args.checkpoint)}
    only = set(args.cases) if args.cases else None
    columns = {tag: column_scores(tag, path, args.sets, only, log) for tag, path in paths.items()}
    print("\n" + "; ".join(f"{tag} = {path}" for tag, path in paths.items()) +
          "; 1st = first stage alone, +cls = with the candidate classifier (what `segment` gives). Operating point: "
          "each checkpoint's own thresholds; recall per type counts a fracture hit at IoU > 0.2.")
    print(table(columns))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
