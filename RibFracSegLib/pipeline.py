"""One CT through the fracture pipeline: read -> segment -> write, resumable, with a report.

`segment_case` is the per-case step every front-end calls — the `segment` CLI, the Dask cohort
runner, the benchmarks and training validation — so a case is named, skipped, timed and written
the same way everywhere. It never raises for a bad case (the report says what went wrong and the
batch goes on); only `Cancelled` stops it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import defaults
from .cases import case_id
from .detections import FractureResult
from .errors import Cancelled
from .options import SegmentOptions
from .progress import Cancel, Progress

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass
class CaseReport:
    """What happened to one case; one line of the cohort manifest (`to_dict`)."""

    case: str
    input: str
    status: str  # "done", "skipped" (finished earlier) or "failed"
    outputs: dict[str, str] = field(default_factory=dict)  # kind -> file
    seconds: float = 0.0
    n_fractures: int = 0
    error: Optional[str] = None
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the reader noticed but accepted
    result: Optional[FractureResult] = field(default=None, repr=False, compare=False)  # in memory only

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["result"]
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CaseReport":
        return cls(**{k: v for k, v in values.items() if k != "result"})


def case_outputs(out: str | Path, case: str, options: Optional[SegmentOptions] = None) -> dict[str, Path]:
    """Where one case's files go: the submission volume and the JSON summary, plus what `options` ask
    for: the probability map, the DICOM SEG/SR (`dicom_sr.write_case_dicom`), the HTML report."""
    out = Path(out)
    files = {"instances": out / f"{case}.nii.gz", "summary": out / f"{case}.json"}
    if options is None:
        return files
    if options.probability:
        files["probability"] = out / defaults.PROBABILITY_DIR / f"{case}.nii.gz"
    if options.dicom:
        files["fractures_seg"] = out / f"{case}-fractures.seg.dcm"
        if options.ribs:
            files["ribs_seg"] = out / f"{case}-ribs.seg.dcm"
        files["sr"] = out / f"{case}-measurements.sr.dcm"
    if options.report:
        files["report"] = out / f"{case}-report.html"
    return files


CORE_OUTPUTS = ("instances", "summary")  # every finished case has these; the summary records the others


def finished(path: str | Path, out: str | Path, options: Optional[SegmentOptions] = None) -> Optional[CaseReport]:
    """A "skipped" report for a case completed earlier, else None: its volume and summary exist, and the
    summary's `outputs` record every other file `options` ask for (written, or None: nothing to write,
    e.g. a SEG of no fracture)."""
    case = case_id(path)
    files = case_outputs(out, case, options)
    if not (files["summary"].is_file() and files["instances"].is_file()):
        return None
    try:
        summary = json.loads(files["summary"].read_text())
    except (OSError, ValueError):
        return None  # a summary is written atomically; an unreadable one means redo the case
    recorded = summary.get("outputs") or {}
    if options is not None and options.l3 and "l3" not in summary:
        return None  # L3 asked for now, not measured then
    for kind, file in files.items():
        if kind not in CORE_OUTPUTS and (kind not in recorded or (recorded[kind] is not None and not file.is_file())):
            return None  # asked for now, not made then: redo the case
    return CaseReport(case, str(path), SKIPPED,
                      {k: str(v) for k, v in files.items() if k in CORE_OUTPUTS or recorded.get(k)},
                      seconds=float(summary.get("timings_s", {}).get("total", 0.0)),
                      n_fractures=len(summary.get("detections", [])), timings_s=summary.get("timings_s", {}))


def segment_case(path: str | Path, out: Optional[str | Path], options: SegmentOptions, *, checkpoint=None,
                 progress: Optional[Progress] = None, cancel: Optional[Cancel] = None,
                 submission_csv: Optional[str] = defaults.SUBMISSION_CSV) -> CaseReport:
    """Segment one CT into `out` (RibFrac submission + `<case>.json`), or in memory when out is None.

    A case whose summary exists is skipped unless options.force. `checkpoint` (a loaded
    Checkpoint) saves re-reading the file per case. submission_csv=None leaves the shared csv to
    the caller (parallel runs: one writer). The report's `result` holds the FractureResult. A bad
    case gives a "failed" report; Cancelled and io.OutputError (an unwritable folder) propagate.
    """
    from .checkpoint import load_checkpoint
    from .dicom import require_series_folder
    from .inference import segment_ct
    from .io import OutputError, read_ct_and_warnings
    from .provenance import ModelInfo

    case = case_id(path)
    if out is not None and not options.force:
        skipped = finished(path, out, options)
        if skipped is not None:
            return skipped
    start = time.perf_counter()
    try:
        if options.dicom:
            require_series_folder(path)  # refused before any work
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(options.checkpoint_path())
        image, warnings = read_ct_and_warnings(path)
        read_s = time.perf_counter() - start
        result = segment_ct(image, ckpt, progress=progress, cancel=cancel, **options.segment_kwargs())
        result.timings_s["read"] = read_s
        l3, body = _l3(image, result, options) if options.l3 else (None, None)
        model = ModelInfo.of(ckpt, options.checkpoint_path())
        outputs = {} if out is None else _write(result, case, path, out, options, submission_csv, warnings, image,
                                                model, l3, body)
    except (Cancelled, OutputError):  # stop the run: the next case would fail the same way
        raise
    except (ValueError, RuntimeError, OSError) as err:  # InputError/CheckpointError are ValueErrors
        return CaseReport(case, str(path), FAILED, seconds=time.perf_counter() - start, error=str(err))
    return CaseReport(case, str(path), DONE, {k: str(v) for k, v in outputs.items()},
                      seconds=time.perf_counter() - start, n_fractures=len(result.detections),
                      timings_s=dict(result.timings_s), warnings=warnings, result=result)


def _write_qc(image, result: FractureResult, case: str, out: str | Path) -> dict:
    """Write the case's unfolded-rib QC pictures; return each detection's unfolded coordinates by id
    (None: on no rib), for the summary's `unfolded` field."""
    from .ribs.qc import write_unfolded_qc
    from .ribs.unfold_marks import unfolded_fields

    if result.ribs is None:
        return {}
    return unfolded_fields(write_unfolded_qc(image, result.ribs, result.detections, Path(out), case).marks)


def _l3(image, result: FractureResult, options: SegmentOptions) -> tuple:
    """L3 (the vertebral count named from this run's ribs, checked against the MIP network) and, when it is in
    view, body composition on its slice."""
    from .l3 import body_composition
    from .l3.check import locate_l3_checked

    start = time.perf_counter()
    l3 = locate_l3_checked(image, ribs=result.ribs)
    body = body_composition(image, l3, height_m=options.height_m) if l3.in_view else None
    result.timings_s["l3"] = time.perf_counter() - start
    return l3, body


def _write(result: FractureResult, case: str, source: str | Path, out: str | Path, options: SegmentOptions,
           submission_csv: Optional[str], warnings: list[str], image, model, l3=None, body=None) -> dict[str, Path]:
    """The case's files: QC pictures, DICOM SEG/SR and the report first, then `export.write_case` (summary
    last, recording which files were made; removed again on an OutputError). Returns the files made."""
    from .export import write_case

    files = case_outputs(out, case, options)
    fields = {"unfolded": _write_qc(image, result, case, out)} if options.qc else {}  # pictures before the summary
    made: dict[str, Optional[Path]] = {k: v for k, v in files.items() if k not in CORE_OUTPUTS}
    if options.dicom:
        from .dicom_sr import write_case_dicom

        made.update(write_case_dicom(source, image, result, model, files, l3=l3, body=body))
    if options.l3:
        fields.update(l3=l3.as_dict(), body_composition=None if body is None else body.as_dict())
    if options.report:
        from .case_report import write_case_report

        write_case_report(files["report"], image, result, case, model=model, source=str(source), warnings=warnings,
                          l3=l3, body=body, outputs={k: v.name for k, v in made.items() if v is not None})
    fields["outputs"] = {k: None if v is None else v.relative_to(out).as_posix() for k, v in made.items()}
    write_case(result, case, out, probability=options.probability, tables=submission_csv is not None,
               source=str(source), checkpoint=str(options.checkpoint_path()), warnings=warnings, **fields)
    return {k: v for k, v in files.items() if k in CORE_OUTPUTS or made.get(k) is not None}
