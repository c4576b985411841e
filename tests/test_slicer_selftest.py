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


def _copy_tested(installed_dir, flag: bool) -> str:
    """In a fresh interpreter where an 'installed' copy was imported first (as Slicer does at start-up),
    which copy the self-test script then imports; the last line printed is RibFracSegLogicLib's folder."""
    import subprocess
    import sys

    code = (f"import sys; sys.path.insert(0, {str(installed_dir)!r}); import RibFracSegLogicLib.panel, RibFracSegLib; "
            "import importlib.util as u; spec = u.spec_from_file_location('s', " + repr(str(SCRIPT)) + "); "
            "s = u.module_from_spec(spec); spec.loader.exec_module(s); "
            f"s.use_copy(installed={flag}); import RibFracSegLogicLib.panel as p, RibFracSegLib.shipped as q; "
            "from pathlib import Path; print(Path(p.__file__).parent.parent); print(Path(q.__file__).parent.parent)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_the_self_test_tests_the_source_tree_even_with_an_installed_copy_loaded(tmp_path):
    installed = tmp_path / "qt-scripted-modules"  # an installed extension: the packages side by side
    installed.mkdir()
    (installed / "RibFracSegLib").symlink_to(REPO / "RibFracSegLib", target_is_directory=True)
    (installed / "RibFracSegLogicLib").symlink_to(REPO / "RibFracSeg" / "RibFracSegLogicLib", target_is_directory=True)
    lines = _copy_tested(installed, False).splitlines()
    assert lines[0] == f"RibFracSeg self-test of the source tree: {REPO / 'RibFracSeg'}, {REPO}"
    assert lines[1:] == [str(REPO / "RibFracSeg"), str(REPO)]  # submodules imported afterwards too
    lines = _copy_tested(installed, True).splitlines()
    assert lines[0] == f"RibFracSeg self-test of the installed copy: {installed}, {installed}"
    assert lines[1:] == [str(installed), str(installed)]
