"""The demo reports L3 as `ribfracseg l3` does: the checked L3 (count + network) with its source and
review flag, on the demo's own kind of phantom (an oblique one here)."""

from __future__ import annotations

import re

import torch

from RibFracSegLib.cli import demo
from RibFracSegLib.l3.check import L3Check, locate_l3_checked
from RibFracSegLib.l3.locator import L3Result
from RibFracSegLib.phantom import generate_phantom

torch.set_num_threads(2)


def test_demo_prints_the_checked_l3_near_the_truth(capsys, tmp_path):
    params = demo.demo_params(655251268, size=192)  # the oblique draw issue 27 saw "not in view" on
    assert params.orientation == "oblique"
    case = generate_phantom(params)
    demo._demo_l3(case, tmp_path)
    line = capsys.readouterr().out.splitlines()[0]
    checked = locate_l3_checked(case.image)
    assert line == demo.l3_line(checked, case.l3)
    assert f"source {checked.source}" in line and f"count from {checked.count_anchor}" in line
    error = float(re.search(r"([\d.]+) mm from the truth", line).group(1))
    assert error < 10.0 and abs(checked.z_mm - case.l3.center_lps[2]) < 10.0


def test_a_flagged_l3_says_review_and_why():
    network = L3Result(in_view=True, confidence=0.8, slice_index=40, z_mm=-600.0, center_ras=(0, 0, -600.0),
                       center_lps=(0, 0, -600.0), row_mm=0.0)
    check = L3Check(True, "count", -640.0, (0.0, 0.0, -640.0), 36, True, "count (rib 12) and network disagree by 40 mm",
                    "rib 12", 5, -640.0, -600.0, -40.0, network)
    line = demo.l3_line(check, None)
    assert "source count" in line and "REVIEW: count (rib 12) and network disagree by 40 mm" in line
    assert "truth: not in view" in line
