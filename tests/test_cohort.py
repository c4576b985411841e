"""Cohorts: a Dask run writes what the serial run writes, and a killed run resumes without redoing cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import dask
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from RibFracSegLib.checkpoint import save_checkpoint
from RibFracSegLib.cohort import read_manifest, run_cases
from RibFracSegLib.evaluation import evaluate_dirs
from RibFracSegLib.options import SegmentOptions
from RibFracSegLib.phantom import PhantomParams, generate_phantom

from test_inference_phantom import MARKER_CKPT, _marked

distributed = pytest.importorskip("dask.distributed")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """4 small phantoms with marked fractures: the marker network finds exactly those (a second a case)."""
    root = tmp_path_factory.mktemp("cohort")
    rows = ["public_id,label_id,label_code"]
    for n, orientation in enumerate(("RAS", "LPS", "oblique", "LPI"), start=1):
        case = generate_phantom(PhantomParams(shape=(112, 112, 64), spacing=(3.0, 3.0, 4.0), n_fractures=3,
                                              orientation=orientation, seed=40 + n))
        sitk.WriteImage(_marked(case), str(root / f"RibFrac{n}-image.nii.gz"))
        sitk.WriteImage(case.fracture_labels, str(root / f"RibFrac{n}-label.nii.gz"))
        rows += [f"RibFrac{n},0,0"] + [f"RibFrac{n},{f.label_id},{f.code}" for f in case.fractures]
    (root / "ribfrac-val-info.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    """The marker network as a checkpoint file, for runs in other processes."""
    return str(save_checkpoint(tmp_path_factory.mktemp("marker") / "marker.pt", MARKER_CKPT))


def _outputs(out):
    """Everything a run wrote that a user reads: instance volumes, detections, csv rows (sorted)."""
    volumes = {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(out.glob("*.nii.gz"))}
    detections = {p.name: json.loads(p.read_text())["detections"] for p in sorted(out.glob("RibFrac*.json"))}
    rows = sorted((out / "ribfrac-pred.csv").read_text().splitlines()[1:])
    rows += sorted((out / "ribfrac-pred-ribs.tsv").read_text().splitlines()[1:])  # the rib side table
    return volumes, detections, rows


def test_dask_two_workers_write_what_the_serial_run_writes(phantoms, marker, tmp_path):
    images = sorted(phantoms.glob("*-image.nii.gz"))
    options = SegmentOptions(checkpoint=marker, device="cpu", threads=1)
    serial = run_cases(images, tmp_path / "serial", options)
    # a local cluster of 2 processes; each worker imports the test-only network's registration first
    with dask.config.set({"distributed.worker.preload": ["inference_helpers"]}):
        parallel = run_cases(images, tmp_path / "dask", options, workers=2)
    assert [r.case for r in parallel] == [r.case for r in serial] == [f"RibFrac{n}" for n in (1, 2, 3, 4)]
    assert [r.status for r in parallel] == ["done"] * 4
    assert [r.n_fractures for r in parallel] == [r.n_fractures for r in serial]
    s_vol, s_det, s_rows = _outputs(tmp_path / "serial")
    d_vol, d_det, d_rows = _outputs(tmp_path / "dask")
    assert list(s_vol) == list(d_vol) and all(np.array_equal(s_vol[k], d_vol[k]) for k in s_vol)
    assert s_det == d_det and s_rows == d_rows and len(s_rows) == 4 + 2 * sum(r.n_fractures for r in serial)
    assert sorted(read_manifest(tmp_path / "dask")) == [f"RibFrac{n}" for n in (1, 2, 3, 4)]
    assert sum(r.n_fractures for r in serial) >= 12  # something to compare: the marked fractures
    scores = evaluate_dirs(tmp_path / "dask", phantoms)
    assert scores.n_scans == 4 and scores.n_gt == 12 and scores.max_recall == 1.0


def test_a_killed_run_resumes_without_redoing_finished_cases(phantoms, marker, tmp_path):
    out = tmp_path / "out"
    # the command line, with the test-only network registered before it starts
    cli = "import runpy, inference_helpers; runpy.run_module('RibFracSegLib', run_name='__main__')"
    cmd = [sys.executable, "-c", cli, "segment", str(phantoms), "--out", str(out), "--threads", "1",
           "--device", "cpu", "--checkpoint", marker, "--no-skip"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(__file__), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    manifest = out / "ribfracseg-manifest.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if manifest.is_file() and manifest.read_text().count("\n") >= 1:
            os.killpg(proc.pid, signal.SIGKILL)  # killed right after the first case was recorded
            break
        time.sleep(0.05)
    proc.wait()
    first = read_manifest(out)
    assert "RibFrac1" in first and first["RibFrac1"].status == "done"
    stamps = {case: (out / f"{case}.nii.gz").stat().st_mtime_ns for case in first}

    result = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=300,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    for case in first:  # finished before the kill: reported as skipped, files untouched
        assert f"{case}: already done" in result.stdout
        assert (out / f"{case}.nii.gz").stat().st_mtime_ns == stamps[case]
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(line["case"] for line in lines) == [f"RibFrac{n}" for n in (1, 2, 3, 4)]  # each case once
    assert all(line["status"] == "done" and line["seconds"] > 0 and line["error"] is None for line in lines)
    assert sorted(row.split(",")[0] for row in _outputs(out)[2] if ",0,0,0" in row) == [f"RibFrac{n}" for n in (1, 2, 3, 4)]


def test_resume_completes_the_csv_and_manifest_of_cases_a_kill_left_unrecorded(phantoms, marker, tmp_path):
    """Killed after a case's summary but before the driver's bookkeeping: the rerun skips the case
    (no recomputation) and still ends with its csv rows and its manifest line."""
    images = sorted(phantoms.glob("*-image.nii.gz"))[:2]
    options = SegmentOptions(checkpoint=marker, threads=1)
    out = tmp_path / "out"
    first = run_cases(images, out, options)
    csv_rows = sorted((out / "ribfrac-pred.csv").read_text().splitlines())
    rib_rows = (out / "ribfrac-pred-ribs.tsv").read_text()
    assert [r.status for r in first] == ["done", "done"] and len(csv_rows) == 1 + 2 + sum(r.n_fractures for r in first)
    (out / "ribfrac-pred.csv").unlink()
    (out / "ribfrac-pred-ribs.tsv").unlink()
    (out / "ribfracseg-manifest.jsonl").unlink()
    again = run_cases(images, out, options)
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert [r.n_fractures for r in again] == [r.n_fractures for r in first]
    assert sorted((out / "ribfrac-pred.csv").read_text().splitlines()) == csv_rows
    assert (out / "ribfrac-pred-ribs.tsv").read_text() == rib_rows
    assert {c: r.status for c, r in read_manifest(out).items()} == {"RibFrac1": "done", "RibFrac2": "done"}
    run_cases(images, out, options)  # a third run adds nothing
    assert len((out / "ribfracseg-manifest.jsonl").read_text().splitlines()) == 2
