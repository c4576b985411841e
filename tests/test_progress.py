"""Off a terminal (a log file, CI, the Slicer console) progress is a few lines, not tqdm redraws."""

from __future__ import annotations

import contextlib
import io

import torch

import bad_input_files as B
from RibFracSegLib import defaults
from RibFracSegLib.cli import main
from RibFracSegLib.progress import on_terminal, tqdm_progress

torch.set_num_threads(1)


def test_a_step_prints_a_line_per_percent_step(capsys):
    assert not on_terminal()  # pytest captures stderr
    with tqdm_progress("RibFrac1", "patch") as progress:
        for done in range(0, 49, 2):
            progress(done, 48)
        progress(48, 48)  # a repeated last call prints nothing more
    lines = capsys.readouterr().err.splitlines()
    steps = 100 // defaults.PROGRESS_LOG_STEP_PERCENT
    assert len(lines) == steps
    assert lines[0] == f"RibFrac1: {defaults.PROGRESS_LOG_STEP_PERCENT}% (12/48 patches)"
    assert lines[-1].startswith("RibFrac1: 100% (48/48 patches) in ")


def test_segment_into_a_log_is_one_line_per_case_and_the_steps(tmp_path):
    ct = B.good_ct(tmp_path, "RibFrac1.nii.gz")
    ckpt = B.tiny_fracture_checkpoint(tmp_path / "tiny.pt")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["segment", str(ct), str(B.good_ct(tmp_path, "RibFrac2.nii.gz")), "--checkpoint", str(ckpt),
                       "--out", str(tmp_path / "out"), "--threads", "1"])
    log = out.getvalue() + err.getvalue()
    assert status == 0 and "\r" not in log
    cases = [line for line in out.getvalue().splitlines() if " fractures, " in line]
    steps = [line for line in err.getvalue().splitlines() if "% (" in line]
    assert [line.split(":")[0] for line in cases] == ["RibFrac1", "RibFrac2"]
    assert len(steps) <= 2 * 100 // defaults.PROGRESS_LOG_STEP_PERCENT
    assert len(err.getvalue().splitlines()) == len(steps)  # no bar on stderr besides the steps
