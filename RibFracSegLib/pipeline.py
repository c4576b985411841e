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


def case_outputs(out: str | Path, case: str, probability: bool = False) -> dict[str, Path]:
    """Where one case's files go: the submission volume, the JSON summary, the probability map."""
    out = Path(out)
    files = {"instances": out / f"{case}.nii.gz", "summary": out / f"{case}.json"}
    if probability:
        files["probability"] = out / defaults.PROBABILITY_DIR / f"{case}.nii.gz"
    return files


def finished(path: str | Path, out: str | Path) -> Optional[CaseReport]:
    """A "skipped" report for a case completed earlier (its volume and summary exist), else None."""
    case = case_id(path)
    files = case_outputs(out, case)
    if not (files["summary"].is_file() and files["instances"].is_file()):
        return None
    try:
        summary = json.loads(files["summary"].read_text())
    except (OSError, ValueError):
        return None  # a summary is written atomically; an unreadable one means redo the case
    return CaseReport(case, str(path), SKIPPED, {k: str(v) for k, v in files.items()},
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
    from .inference import segment_ct
    from .io import OutputError, read_ct_and_warnings

    case = case_id(path)
    if out is not None and not options.force:
        skipped = finished(path, out)
        if skipped is not None:
            return skipped
    start = time.perf_counter()
    try:
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(options.checkpoint_path())
        image, warnings = read_ct_and_warnings(path)
        read_s = time.perf_counter() - start
        result = segment_ct(image, ckpt, progress=progress, cancel=cancel, **options.segment_kwargs())
        result.timings_s["read"] = read_s
        outputs = {} if out is None else _write(result, case, path, out, options, submission_csv, warnings, image)
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


def _write(result: FractureResult, case: str, source: str | Path, out: str | Path, options: SegmentOptions,
           submission_csv: Optional[str], warnings: list[str], image=None) -> dict[str, Path]:
    """The case's files through `export.write_case` (summary last; removed again on an OutputError)."""
    from .export import write_case

    qc = {"unfolded": _write_qc(image, result, case, out)} if options.qc else {}  # pictures before the summary
    write_case(result, case, out, probability=options.probability, tables=submission_csv is not None,
               source=str(source), checkpoint=str(options.checkpoint_path()), warnings=warnings, **qc)
    return case_outputs(out, case, options.probability)
