"""The built wheel carries the shipped models: installed in a fresh venv and run from another folder,
`segment` and `l3` find them through importlib.resources (not relative to a source tree)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from RibFracSegLib.phantom import PhantomParams, generate_phantom

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace",
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_segment_and_l3_from_another_folder(tmp_path):
    src = tmp_path / "src"  # build from a copy: the checkout stays clean
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "RibFracSegLib", src / "RibFracSegLib", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
          str(tmp_path / "dist"), str(src)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("ribfracseg-*.whl"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run(pip + ["torch==2.13.0"], cwd=tmp_path)  # the CPU build, from the local cache
    _run(pip + [str(wheel)], cwd=tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    case = generate_phantom(PhantomParams(shape=(160, 160, 170), spacing=(2.3, 2.3, 2.5), fov="abdomen_pelvis",
                                          n_fractures=2, orientation="RAS", seed=777001))
    sitk.WriteImage(case.image, str(work / "patient1.nii.gz"))
    model = _run([str(venv / "bin" / "python"), "-c",
                  "from RibFracSegLib.shipped import shipped_model; print(shipped_model('fracture'))"], cwd=work)
    site = venv / "lib"
    assert Path(model.strip()).is_file() and Path(model.strip()).is_relative_to(site)

    cli = str(venv / "bin" / "ribfracseg")
    _run([cli, "segment", "patient1.nii.gz", "--out", "seg", "--threads", "2"], cwd=work)
    summary = json.loads((work / "seg" / "patient1.json").read_text())
    assert Path(summary["checkpoint"]).is_relative_to(site) and summary["checkpoint"].endswith("ribfrac_default.pt")
    assert (work / "seg" / "patient1.nii.gz").is_file() and (work / "seg" / "ribfrac-pred.csv").is_file()
    _run([cli, "l3", "patient1.nii.gz", "--out", "l3", "--no-png"], cwd=work)
    l3 = json.loads((work / "l3" / "patient1.l3.json").read_text())["l3"]
    assert l3["in_view"] is True and abs(l3["z_mm"] - case.l3.center_lps[2]) < 6
