"""Faults lose nothing: a `segment` batch killed at several moments, then rerun, ends exactly as an
uninterrupted run; after every kill each file under its real name is complete.

Kills are placed deterministically (just before the Nth rename of a finished temporary file, in a
driver process that wraps `os.replace`) and once at an arbitrary moment (SIGKILL as soon as the
first case is done, while the next one runs).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

import bad_input_files as B
from RibFracSegLib import nifti
from RibFracSegLib.cli import main
from RibFracSegLib.evaluation.reading import volume_files
from RibFracSegLib.io import PARTIAL_MARKER
from RibFracSegLib.output_folder import LOCK_NAME

torch.set_num_threads(1)
DRIVER = """
import os, signal, sys
point, calls, real = int(sys.argv[1]), [0], os.replace
def replace(src, dst):
    calls[0] += 1
    if calls[0] == point:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
from RibFracSegLib.cli import main
from RibFracSegLib.evaluation.reading import volume_files
sys.exit(main(sys.argv[2:]))
"""


def _inputs(folder: Path) -> list[str]:
    cases = []
    for n in range(3):
        array = B.ct_array()
        array[2 + 4 * n: 6 + 4 * n, 26:30, 8:32] = 1100  # a different second bar per case
        cases.append(str(B.write(B.image(array), folder / f"case{n}.nii.gz")))
    return cases


def _argv(cases: list[str], ckpt: Path, out: Path) -> list[str]:
    return ["segment", *cases, "--checkpoint", str(ckpt), "--out", str(out), "--probability", "--precision", "fp32",
            "--threads", "1"]


def _spawn(args: list[str], kill_at: int | None = None) -> subprocess.Popen:
    command = [sys.executable, "-c", DRIVER, str(kill_at)] if kill_at else [sys.executable, "-m", "RibFracSegLib"]
    return subprocess.Popen(command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
                            errors="replace", env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8"))


def _assert_complete(out: Path) -> None:
    """Every file under its real name is whole: images hold all their voxels, csv and json parse."""
    for path in out.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.name.endswith(".nii.gz"):
            found = nifti.scan(path)
            assert found.header is not None and found.length == found.header.length, path
        elif path.suffix == ".json":
            assert json.loads(path.read_text())["public_id"] == path.stem
        elif path.suffix == ".csv":
            with path.open() as fh:
                rows = list(csv.DictReader(fh))
            assert rows and set(rows[0]) == {"public_id", "label_id", "confidence", "label_code"}
        elif path.suffix == ".tsv":
            assert path.read_text().startswith("public_id\tlabel_id\trib\t")


def _state(out: Path) -> dict:
    """What a user gets: file names, detections, csv rows and voxels (timings left out)."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    summaries = {p.stem: json.loads(p.read_text())["detections"] for p in out.glob("*.json")}
    with (out / "ribfrac-pred.csv").open() as fh:
        rows = sorted(tuple(r.values()) for r in csv.DictReader(fh))
    images = {p.relative_to(out).as_posix(): sitk.GetArrayFromImage(sitk.ReadImage(str(p)))
              for p in out.rglob("*.nii.gz")}
    return {"files": files, "summaries": summaries, "rows": rows, "images": images}


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    cases = _inputs(tmp_path)
    ckpt = B.tiny_fracture_checkpoint(tmp_path / "tiny.pt")
    assert main(_argv(cases, ckpt, tmp_path / "reference")) == 0
    reference = _state(tmp_path / "reference")
    assert len(reference["files"]) == 3 * 3 + 3  # image, probability, summary per case; csv, rib table, manifest

    out = tmp_path / "out"
    # Renames per case: probability, instances, summary, then the driver's csv and rib table (the
    # manifest is appended). Kill before renaming: the 2nd case's probability (the 1st case done);
    # its summary; its instances (redoing it).
    for kill_at in (6, 3, 2):
        run = _spawn(_argv(cases, ckpt, out), kill_at)
        run.communicate(timeout=300)
        assert run.returncode == -signal.SIGKILL
        _assert_complete(out)
    assert {p.stem for p in out.glob("*.json") if not p.name.startswith(".")} == {"case0"}
    assert list(out.glob(f".*{PARTIAL_MARKER}*.nii.gz"))  # what the kills left behind, under temporary names
    assert sorted(volume_files(out, ground_truth=False)) == ["case0", "case1"]  # ... which the evaluator ignores

    run = _spawn(_argv(cases, ckpt, out))  # killed at an arbitrary moment once case1 is done
    deadline = time.monotonic() + 300
    while not (out / "case1.json").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    _assert_complete(out)

    assert main(_argv(cases, ckpt, out)) == 0
    final = _state(out)
    assert final["files"] == reference["files"]  # no lock, no temporary file left
    assert final["summaries"] == reference["summaries"] and final["rows"] == reference["rows"]
    assert all(np.array_equal(final["images"][k], v) for k, v in reference["images"].items())
    assert not (out / LOCK_NAME).exists()
