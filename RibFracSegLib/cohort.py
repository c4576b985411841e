"""A cohort of CTs through `segment_case`: serially, on a local Dask cluster, or on an existing one.

The process that calls `run_cases` owns the output folder's shared files: it appends one manifest
line per finished case (input, status, outputs, seconds, error) and keeps the RibFrac csv, so
workers only ever write their own case's files and nothing is written by two processes. A killed
run resumes where it stopped: a case whose summary exists is never redone (unless force).
Dask is optional (`pip install ribfracseg[dask]`); without it only the serial path is available.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Optional

from . import defaults
from .cases import case_id, check_unique_ids
from .options import SegmentOptions
from .pipeline import DONE, FAILED, SKIPPED, CaseReport, finished, segment_case

OnReport = Callable[[CaseReport], None]


def read_manifest(out: str | Path) -> dict[str, CaseReport]:
    """{case: latest report} from the manifest; a line cut short by a kill is ignored."""
    path = Path(out) / defaults.MANIFEST_NAME
    reports: dict[str, CaseReport] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                report = CaseReport.from_dict(json.loads(line))
            except (ValueError, TypeError):
                continue
            reports[report.case] = report
    return reports


def append_manifest(out: str | Path, report: CaseReport) -> None:
    """One JSON line per case, flushed to disk before the next case is reported (an append-only log)."""
    path = Path(out) / defaults.MANIFEST_NAME
    with path.open("a") as fh:
        fh.write(json.dumps(report.to_dict()) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _record(out: Path, report: CaseReport, on_report: Optional[OnReport], recorded: set[str]) -> CaseReport:
    """Driver side of a finished case: its csv and rib-table rows and its manifest line, then the callback.

    A skipped case not yet `recorded` (a kill landed between its summary and its manifest line)
    gets both now, so a resumed run always ends with a complete csv and manifest.
    """
    from .export import write_case_tables

    if report.status == DONE or (report.status == SKIPPED and report.case not in recorded):
        summary = json.loads(Path(report.outputs["summary"]).read_text())
        write_case_tables(report.case, summary["detections"], out)
        append_manifest(out, replace(report, status=DONE))
        recorded.add(report.case)
    elif report.status == FAILED:
        append_manifest(out, report)
    if on_report is not None:
        on_report(report)
    return report


def _worker_case(path: str, out: str, options: dict, progress=None) -> dict:
    """One case on a Dask worker (or in this process): plain dicts in and out, no big arrays back."""
    opts = SegmentOptions.from_dict(options)
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    from .checkpoint import cached_checkpoint

    try:
        ckpt = cached_checkpoint(opts.checkpoint_path())
    except (ValueError, OSError) as err:  # CheckpointError: report it per case, as a bad CT is
        return CaseReport(case_id(path), path, FAILED, error=str(err)).to_dict()
    return segment_case(path, out, opts, checkpoint=ckpt, progress=progress, submission_csv=None).to_dict()


def run_cases(inputs: Iterable[str | Path], out: str | Path, options: SegmentOptions, *, workers: int = 0,
              scheduler: Optional[str] = None, on_report: Optional[OnReport] = None,
              progress_factory=None) -> list[CaseReport]:
    """Segment every input into `out`; returns one report per input, in input order.

    workers > 0 starts a local Dask cluster of that many single-case processes (torch threads
    split so the machine is not oversubscribed); scheduler="tcp://host:8786" uses an existing
    cluster. progress_factory(case) -> context manager yielding a progress callback (serial only).
    """
    options.validate()
    paths = [Path(p) for p in inputs]
    check_unique_ids(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reports: dict[str, CaseReport] = {}
    recorded = {case for case, r in read_manifest(out).items() if r.status == DONE}
    todo = []
    for path in paths:
        skipped = None if options.force else finished(path, out, options)
        if skipped is not None:
            reports[str(path)] = _record(out, skipped, on_report, recorded)
        else:
            todo.append(str(path))
    if workers > 0 or scheduler:
        from .distributed import run_on_dask

        for report in run_on_dask(_worker_case, todo, str(out), options, workers=workers, scheduler=scheduler):
            reports[report.input] = _record(out, report, on_report, recorded)
    else:
        for path in todo:
            reports[path] = _record(out, _serial_case(path, out, options, progress_factory), on_report, recorded)
    return [reports[str(p)] for p in paths]


def _serial_case(path: str, out: Path, options: SegmentOptions, progress_factory) -> CaseReport:
    if progress_factory is None:
        return CaseReport.from_dict(_worker_case(path, str(out), options.to_dict()))
    with progress_factory(case_id(path)) as progress:
        return CaseReport.from_dict(_worker_case(path, str(out), options.to_dict(), progress))
