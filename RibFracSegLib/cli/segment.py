"""`ribfracseg segment`: detect rib fractures in one CT, many CTs, a folder of CTs or a list file.

Writes the RibFrac submission (`<id>.nii.gz` + one csv), `<id>.json` summaries and a manifest
(one line per case) into --out; finished cases are skipped unless --force, so a killed batch
resumes. --workers N runs cases in parallel on a local Dask cluster, --scheduler ADDRESS on an
existing one. --dicom adds a DICOM SEG and SR for DICOM series inputs (`dicom_sr`), --report a
one-page HTML report (`case_report`), --l3 the L3 slice and body composition. With --qc each case also gets `<id>-unfolded.png` and `<id>-qc.png`
(RibFracSegLib.ribs.qc). A bad input is reported and the batch goes on; the exit code is 1 if any
case failed.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from RibFracSegLib import defaults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="CT",
                        help="CT file, DICOM series folder, folder of CT files, or a .txt list of paths")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file (ours or a FracNet model_weights.pth); default: the shipped one")
    parser.add_argument("--out", required=True, help="output folder (RibFrac submission + JSON summaries)")
    parser.add_argument("--device", default="auto", choices=defaults.DEVICES)
    parser.add_argument("--overlap", type=float, default=None, help=f"patch overlap (default {defaults.OVERLAP})")
    parser.add_argument("--threshold", type=float, default=None, help="probability threshold (default: checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--precision", default="auto", choices=defaults.PRECISIONS,
                        help="auto: the precision the checkpoint was calibrated for (ribfracseg calibrate-precision)")
    parser.add_argument("--no-skip", action="store_true", help="compute every patch, even those far from the ribs or without bone")
    parser.add_argument("--probability", action="store_true", help="also write probabilities/<id>.nii.gz")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (per worker)")
    parser.add_argument("--force", action="store_true", help="redo cases that already have a summary")
    parser.add_argument("--rib-filter", action=argparse.BooleanOptionalAction, default=None,
                        help="drop detections that touch no rib (grown by the checkpoint's rib_margin_mm); "
                             "default: the checkpoint's setting (off for the shipped model)")
    parser.add_argument("--qc", action="store_true",
                        help="also write <id>-unfolded.png and <id>-qc.png (ribs unfolded, fractures boxed) and "
                             "each detection's unfolded coordinates in the JSON summary ('unfolded', by id)")
    parser.add_argument("--dicom", action="store_true",
                        help="for a DICOM series input: also write <id>-fractures.seg.dcm (DICOM SEG, one segment per "
                             "fracture) and <id>-measurements.sr.dcm (DICOM SR TID 1500), referencing the series")
    parser.add_argument("--ribs", action="store_true", help="with --dicom: also <id>-ribs.seg.dcm (one segment per rib)")
    parser.add_argument("--report", action="store_true",
                        help="also write <id>-report.html: one self-contained page (pictures, tables, run details)")
    parser.add_argument("--l3", action="store_true",
                        help="also locate L3 and measure body composition on its slice (in the JSON, SR and report)")
    parser.add_argument("--height", type=float, default=None, help="patient height in metres, for the SMI (with --l3)")
    parser.add_argument("--workers", type=int, default=0,
                        help="run N cases at once on a local Dask cluster (needs ribfracseg[dask])")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="send cases to an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")


def run(args: argparse.Namespace) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a shared CPU spinning threads fight the
    # other processes (measured 2.5x slower per patch under load). Only effective before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from RibFracSegLib.cases import expand_inputs
    from RibFracSegLib.checkpoint import load_checkpoint, require_task
    from RibFracSegLib.cli import refuse
    from RibFracSegLib.options import SegmentOptions
    from RibFracSegLib.output_folder import run_in_output_folder

    try:
        options = SegmentOptions(checkpoint=args.checkpoint, device=args.device, overlap=args.overlap,
                                 threshold=args.threshold, batch_size=args.batch_size, precision=args.precision,
                                 skip_empty=not args.no_skip, on_rib=args.rib_filter,
                                 probability=args.probability, threads=args.threads, force=args.force,
                                 qc=args.qc, dicom=args.dicom, ribs=args.ribs, report=args.report, l3=args.l3,
                                 height_m=args.height).validate()
        if options.device == "cuda":  # no GPU: refused before any case (torch is loaded here anyway)
            from RibFracSegLib.inference import resolve_device

            resolve_device(options.device)
        # a bad or wrong-kind checkpoint stops the run before any case
        require_task(load_checkpoint(options.checkpoint_path()), "fractures", options.checkpoint_path(),
                     "ribfracseg segment")
        cases = expand_inputs(args.inputs)
    except ValueError as err:
        return refuse(err)
    return run_in_output_folder(args.out, "ribfracseg segment", lambda out: _run(args, options, cases, out))


def detection_line(d: dict) -> str:
    """One row of the printed table from a summary's detection: id, confidence, type and measurements, rib, RAS."""
    from RibFracSegLib.detections import fracture_text
    from RibFracSegLib.ribs.assign import rib_phrase

    ras = ", ".join(f"{v:.1f}" for v in d["center_ras"])
    kind = fracture_text(d)
    return f"  {d['id']:>3}  {d['confidence']:.2f}  {kind:<18}  {rib_phrase(d['rib'], d['rib_region']):<28}  RAS ({ras}) mm"


def _run(args: argparse.Namespace, options, cases: list, out: Path) -> int:
    """All cases through the cohort runner; a bad case is reported, an unwritable folder stops all."""
    from tqdm import tqdm

    from RibFracSegLib.cli import refuse
    from RibFracSegLib.cohort import run_cases
    from RibFracSegLib.io import OutputError
    from RibFracSegLib.pipeline import FAILED, SKIPPED
    from RibFracSegLib.progress import case_bar, tqdm_progress

    bar, finished = case_bar(total=len(cases), desc="cases", unit="CT"), []

    def on_report(report) -> None:
        bar.update(1)
        finished.append(report.case)
        for line in report.warnings:
            tqdm.write(f"warning: {report.case}: {line}")
        if report.status == SKIPPED:
            tqdm.write(f"{report.case}: already done, skipped")
        elif report.status == FAILED:
            tqdm.write(f"error: {report.case} ({report.input}): {report.error}")
        else:
            summary = json.loads(Path(report.outputs["summary"]).read_text())
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings_s.items())
            tqdm.write(f"{report.case}: {report.n_fractures} fractures, {summary['patches_skipped']}/"
                       f"{summary['patches_total']} patches skipped, {summary['device']}; {stages}")
            for d in summary["detections"]:
                tqdm.write(detection_line(d))

    parallel = args.workers > 0 or args.scheduler
    try:
        reports = run_cases(cases, out, options, workers=args.workers, scheduler=args.scheduler, on_report=on_report,
                            progress_factory=None if parallel else lambda case: tqdm_progress(case, "patch"))
    except OutputError as err:  # the next case would fail the same way
        tqdm.write(f"error: {err.strerror or err}. Stopped: {len(cases) - len(finished)} of {len(cases)} cases not done")
        return 1
    except (ValueError, RuntimeError) as err:  # bad options/inputs, or --workers without Dask installed
        return refuse(err)
    finally:
        bar.close()
    return 1 if any(r.status == FAILED for r in reports) else 0
