"""A cohort from Slicer's Python console: CT files in, .seg.nrrd / .mrk.json / .tsv per case out.

Each case is loaded into the Logic's scene, processed, saved atomically and removed again, so a
long batch neither fills the user's scene nor leaves half-written files. One failing case is
logged and reported; the others still run. Cancel stops the batch between patches.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from RibFracSegLib.cases import case_id
from RibFracSegLib.errors import Cancelled
from RibFracSegLib.io import write_text
from RibFracSegLib.pipeline import DONE, FAILED, CaseReport

from .files import save_markups, save_segmentation, save_table
from .nodes import node_ids, remove_nodes_added_since
from .volumes import volume_node_from_file

logger = logging.getLogger("RibFracSeg")

SUMMARY_NAME = "ribfracseg-batch.tsv"


def case_files(out_dir: Path, case: str) -> dict[str, Path]:
    """Where one case's results go (the same names the panel's Save would suggest)."""
    return {"segmentation": out_dir / f"{case}.seg.nrrd", "points": out_dir / f"{case}.mrk.json",
            "table": out_dir / f"{case}.tsv", "l3_point": out_dir / f"{case}.L3.mrk.json",
            "l3_table": out_dir / f"{case}.bodycomp.tsv"}


def save_results(scene, nodes, out_dir: Path, case: str) -> dict[str, Path]:
    """Write a run's nodes as files; returns {kind: path} for what was written."""
    paths = case_files(out_dir, case)
    savers = {"segmentation": save_segmentation, "points": save_markups, "table": save_table,
              "l3_point": save_markups, "l3_table": save_table}
    written = {}
    for kind, save in savers.items():
        node = getattr(nodes, kind)
        if node is not None:
            written[kind] = save(scene, node, paths[kind])
    return written


def run_batch(logic, inputs: Iterable[str | Path], out_dir: str | Path, *, keep_nodes: bool = False,
              on_case: Optional[Callable[[int, CaseReport], None]] = None, dicom: bool = False, report: bool = False,
              **options) -> list[CaseReport]:
    """Process every CT file/DICOM folder in `inputs` with logic.process(**options); write per-case files.

    dicom=True also writes the fractures DICOM SEG and the SR (and the ribs SEG with ribs=True) for a DICOM
    series input, report=True the case's HTML report: the files and names of `ribfracseg segment --dicom/--report`.

    Returns one CaseReport per input (error set when that case failed) and writes a summary TSV.
    The Cancelled exception (from options['cancel']) ends the batch after cleaning up the case.
    """
    out_dir = Path(out_dir)
    write_report = report  # `report` names each case's CaseReport below
    scene = logic.scene
    reports: list[CaseReport] = []
    for index, source in enumerate(inputs):
        report = CaseReport(case=case_id(source), input=str(source), status=DONE)
        before = node_ids(scene)
        start = time.perf_counter()
        try:
            volume = volume_node_from_file(scene, str(source), report.case)
            result = logic.process(volume, name=report.case, **options)
            report.outputs = {k: str(v) for k, v in save_results(scene, result.nodes, out_dir, report.case).items()}
            if dicom or write_report:
                report.outputs.update(_library_files(logic, volume, result, source, out_dir, report.case, dicom,
                                                     write_report))
            report.n_fractures = len(result.detections)
        except Cancelled:
            remove_nodes_added_since(scene, before)
            raise
        except Exception as err:  # one bad case must not stop a cohort; reported per case
            report.status, report.error = FAILED, f"{type(err).__name__}: {err}"
            logger.error("RibFracSeg batch: %s failed: %s", source, report.error)
            keep = False
        else:
            keep = keep_nodes
        report.seconds = time.perf_counter() - start
        if not keep:
            remove_nodes_added_since(scene, before)
        reports.append(report)
        logger.info("RibFracSeg batch: %s: %d fractures in %.1f s", report.case, report.n_fractures, report.seconds)
        if on_case is not None:
            on_case(index, report)
    write_summary(reports, out_dir / SUMMARY_NAME)
    return reports


def _library_files(logic, volume, result, source, out_dir: Path, case: str, dicom: bool, report: bool) -> dict:
    """The DICOM SEG/SR and the report of one case, named as the command line names them."""
    from RibFracSegLib.options import SegmentOptions
    from RibFracSegLib.pipeline import case_outputs

    from .logic import model_info
    from .volumes import image_from_volume_node

    files = case_outputs(out_dir, case, SegmentOptions(dicom=dicom, ribs=dicom and result.options.ribs, report=report))
    written = {}
    if dicom:
        from RibFracSegLib.dicom_sr import write_case_dicom

        written = write_case_dicom(source, image_from_volume_node(volume), result.output.fractures,
                                   model_info(result.options), files, l3=result.output.l3, body=result.output.body)
    if report:
        written["report"] = logic.save_report(volume, result, files["report"], name=case)
    return {k: str(v) for k, v in written.items() if v is not None}


def write_summary(reports: list[CaseReport], path: Path) -> Path:
    lines = ["case\tinput\tstatus\tn_fractures\tseconds\terror"]
    lines += [f"{r.case}\t{r.input}\t{r.status}\t{r.n_fractures}\t{r.seconds:.2f}\t{r.error or ''}" for r in reports]
    return write_text("\n".join(lines) + "\n", path)
