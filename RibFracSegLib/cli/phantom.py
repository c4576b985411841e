"""`ribfracseg phantom`: write synthetic CT phantoms with known truth in the RibFrac layout."""

from __future__ import annotations

import argparse
from collections import Counter

from RibFracSegLib.defaults import PHANTOM_FIELDS_OF_VIEW, PHANTOM_ORIENTATIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--n", type=int, default=1, help="number of cases (default 1)")
    p.add_argument("--seed", type=int, default=0, help="data-set seed; case i depends on it and i only")
    p.add_argument("--split", default="train", help="split name used in the csv file names (default train)")
    p.add_argument("--first-id", type=int, default=1, help="public id of the first case (RibFracN)")
    p.add_argument("--size", type=int, default=512, help="in-plane matrix size (default 512)")
    p.add_argument("--fov", choices=PHANTOM_FIELDS_OF_VIEW, help="field of view (default: random)")
    p.add_argument("--orientation", choices=PHANTOM_ORIENTATIONS, help="storage orientation (default: random)")
    p.add_argument("--fractures", type=int, help="fractures per case, 0-10 (default: random)")
    p.add_argument("--slice-mm", type=float, help="slice spacing in mm (default: random 0.625-2.5)")
    p.add_argument("--pixel-mm", type=float, help="in-plane spacing in mm (default: fitted to the body)")
    p.add_argument("--noise", type=float, help="scanner noise SD in HU (default: random 8-25)")
    p.add_argument("--slice-profile", action="store_true",
                   help="average each slice across its thickness, as a scanner does (slower; default: sampled at "
                        "its centre, so a thin cortex along thick slices shows dashed)")


def run(args: argparse.Namespace) -> int:
    from RibFracSegLib.phantom.dataset import write_dataset
    from RibFracSegLib.progress import case_bar

    from RibFracSegLib import defaults
    from RibFracSegLib.errors import InputError

    if not 0 <= (args.fractures if args.fractures is not None else 0) <= 10:
        raise InputError(f"--fractures {args.fractures}: give 0 to 10 fractures per case.")
    if args.n < 1:
        raise InputError(f"--n {args.n}: give at least one case.")
    if not defaults.PHANTOM_MIN_SIZE <= args.size <= defaults.PHANTOM_MAX_SIZE:
        raise InputError(f"--size {args.size}: the in-plane matrix must be {defaults.PHANTOM_MIN_SIZE}-"
                         f"{defaults.PHANTOM_MAX_SIZE} voxels (default 512).")
    overrides = {k: v for k, v in {"fov": args.fov, "orientation": args.orientation,
                                   "n_fractures": args.fractures, "slice_mm": args.slice_mm,
                                   "pixel_mm": args.pixel_mm, "noise_hu": args.noise,
                                   "slice_profile": args.slice_profile or None}.items() if v is not None}
    bar = case_bar(total=args.n, unit="case", desc="phantoms")

    def report(public_id, case):
        p = case.params
        kinds = Counter(f.kind for f in case.fractures)
        l3 = f"L3 at slice {round(case.l3.center_ijk[2])}" if case.l3 else "L3 not in view"
        bar.write(f"{public_id}: {'x'.join(map(str, p.shape))} at {'x'.join(f'{s:.2f}' for s in p.spacing)} mm, "
                  f"{p.fov}, {p.orientation}, {len(case.fractures)} fractures {dict(kinds)}, {l3}")
        bar.update(1)

    out = write_dataset(args.out, args.n, args.seed, args.split, args.first_id, overrides, args.size, report)
    bar.close()
    print(f"wrote {args.n} cases to {out}")
    return 0
