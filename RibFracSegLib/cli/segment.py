"""`ribfracseg segment`: detect rib fractures in one CT, many CTs, a folder of CTs or a list file.

Writes the RibFrac submission (`<id>.nii.gz` + one csv) and `<id>.json` summaries into --out;
cases whose summary already exists are skipped unless --force, so an interrupted batch resumes.
With --qc each case also gets `<id>-unfolded.png` and `<id>-qc.png` (RibFracSegLib.ribs.qc).
A bad input is reported and the batch goes on; the exit code is 1 if any case failed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from RibFracSegLib import defaults

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LIST_SUFFIXES = (".txt", ".lst", ".list")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="CT",
                        help="CT file, DICOM series folder, folder of CT files, or a .txt list of paths")
    parser.add_argument("--checkpoint", default=str(defaults.DEFAULT_FRACTURE_CHECKPOINT),
                        help="checkpoint file (ours or a FracNet model_weights.pth); default: the shipped one")
    parser.add_argument("--out", required=True, help="output folder (RibFrac submission + JSON summaries)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--overlap", type=float, default=None, help=f"patch overlap (default {defaults.OVERLAP})")
    parser.add_argument("--threshold", type=float, default=None, help="probability threshold (default: checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "mixed", "fp16"])
    parser.add_argument("--no-skip", action="store_true", help="run every patch, even those without bone")
    parser.add_argument("--probability", action="store_true", help="also write probabilities/<id>.nii.gz")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--force", action="store_true", help="redo cases that already have a summary")
    parser.add_argument("--no-rib-filter", action="store_true",
                        help="keep detections off the ribs too (the margin in mm is the checkpoint's rib_margin_mm)")
    parser.add_argument("--qc", action="store_true",
                        help="also write <id>-unfolded.png and <id>-qc.png (ribs unfolded, fractures boxed) and "
                             "each detection's unfolded coordinates in the JSON summary ('unfolded', by id)")


def public_id(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[: -len("-image")] if name.endswith("-image") else name


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """CT paths from files, list files and folders (RibFrac `*-image` files when a folder has them)."""
    cases: list[Path] = []
    for item in map(Path, inputs):
        if item.is_file() and item.suffix.lower() in LIST_SUFFIXES:
            lines = [ln.strip() for ln in item.read_text().splitlines()]
            cases += [(item.parent / ln) for ln in lines if ln and not ln.startswith("#")]
        elif item.is_dir() and any(_is_image(p) for p in item.iterdir()):
            images = sorted(p for p in item.iterdir() if _is_image(p))
            tagged = [p for p in images if public_id(p) != p.name.split(".")[0]]
            cases += tagged or images
        else:
            cases.append(item)  # a CT file or a DICOM folder; read_ct says what is wrong if neither
    return cases


def write_qc(image, result, pid: str, out: Path) -> dict:
    """Write the case's unfolded-rib QC pictures; return each detection's unfolded coordinates by id
    (None: on no rib), for the summary's `unfolded` field."""
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.qc import write_unfolded_qc
    from RibFracSegLib.ribs.unfold_marks import unfolded_fields

    ribs = result.ribs if result.ribs is not None else segment_ribs(image)
    return unfolded_fields(write_unfolded_qc(image, ribs, result.detections, out, pid).marks)


def run(args: argparse.Namespace) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a shared CPU spinning threads fight the
    # other processes (measured 2.5x slower per patch under load). Only effective before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from RibFracSegLib.checkpoint import CheckpointError, load_checkpoint, require_task
    from RibFracSegLib.output_folder import run_in_output_folder

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        checkpoint = require_task(load_checkpoint(args.checkpoint), "fractures", args.checkpoint, "ribfracseg segment")
    except CheckpointError as err:
        print(f"error: {err}")
        return 2
    cases = expand_inputs(args.inputs)
    return run_in_output_folder(args.out, "ribfracseg segment", lambda out: _run_cases(args, checkpoint, cases, out))


def _run_cases(args: argparse.Namespace, checkpoint, cases: list[Path], out: Path) -> int:
    """Each case in turn: a bad input is reported and skipped; an output that cannot be written stops all."""
    from tqdm import tqdm

    from RibFracSegLib.export import write_case
    from RibFracSegLib.inference import segment_ct
    from RibFracSegLib.io import InputError, OutputError, read_ct_and_warnings
    from RibFracSegLib.ribs.assign import rib_phrase

    failed = 0
    for n, path in enumerate(tqdm(cases, desc="cases", unit="CT")):
        pid = public_id(path)
        summary = out / f"{pid}.json"
        if summary.exists() and not args.force:
            tqdm.write(f"{pid}: already done ({summary}), skipped")
            continue
        try:
            t0 = time.perf_counter()
            image, warnings = read_ct_and_warnings(path)
            for line in warnings:
                tqdm.write(f"warning: {pid}: {line}")
            read_s = time.perf_counter() - t0
            with tqdm(desc=pid, unit="patch", leave=False) as bar:
                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                result = segment_ct(image, checkpoint, device=args.device, overlap=args.overlap,
                                    threshold=args.threshold, batch_size=args.batch_size,
                                    return_probability=args.probability, progress=progress,
                                    precision=args.precision, skip_empty=not args.no_skip,
                                    on_rib=False if args.no_rib_filter else None)
            result.timings_s["read"] = read_s
            qc = {"unfolded": write_qc(image, result, pid, out)} if args.qc else {}  # before the summary
            write_case(result, pid, out, probability=args.probability, source=str(path),
                       checkpoint=str(args.checkpoint), warnings=warnings, **qc)
        except OutputError as err:  # the next case would fail the same way
            tqdm.write(f"error: {pid}: {err.strerror or err}. Stopped: {len(cases) - n} of {len(cases)} cases not done")
            return 1
        except (InputError, ValueError, RuntimeError, OSError) as err:
            failed += 1
            tqdm.write(f"error: {pid} ({path}): {err}")
            continue
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items())
        tqdm.write(f"{pid}: {len(result.detections)} fractures, {result.patches_skipped}/{result.patches_total} "
                   f"patches skipped, {result.device}; {stages}")
        for d in result.detections:
            tqdm.write(f"  {d.id:>3}  {d.confidence:.2f}  {rib_phrase(d.rib, d.rib_region):<28}"
                       f"  RAS ({d.center_ras[0]:.1f}, {d.center_ras[1]:.1f}, {d.center_ras[2]:.1f}) mm")
    return 1 if failed else 0
