"""The in-Slicer self-test script's code path, run here on a headless scene (and made to fail)."""

from __future__ import annotations

import dataclasses
import importlib.util

import torch

from slicer_scene import REPO, add_module_path, make_scene

add_module_path()

from RibFracSegLogicLib import selftest  # noqa: E402

torch.set_num_threads(2)
SCRIPT = REPO / "Testing" / "Python" / "RibFracSegSelfTest.py"


def load_script():
    spec = importlib.util.spec_from_file_location("RibFracSegSelfTest", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_self_test_passes_on_a_correct_chain(tmp_path, capsys):
    assert load_script().run(make_scene().scene, tmp_path, quick=True) == 0
    assert "self-test: passed" in capsys.readouterr().out


def test_self_test_fails_when_the_truth_disagrees(tmp_path, capsys, monkeypatch):
    real = selftest.phantom_case

    def shifted(*args, **kwargs):  # truth moved by 5 mm: detections are now > half a voxel off
        case = real(*args, **kwargs)
        moved = {k: (c[0] + 5.0, c[1], c[2]) for k, c in case.truth_ras.items()}
        return dataclasses.replace(case, truth_ras=moved)

    monkeypatch.setattr(selftest, "phantom_case", shifted)
    assert load_script().run(make_scene().scene, tmp_path, quick=True) == 1
    assert "FAIL: phantom-oblique: detection" in capsys.readouterr().out
