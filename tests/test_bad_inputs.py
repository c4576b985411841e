"""The bad-input table: each input people really give, the exit status, and the one line that answers it.

Each case runs the command line as a user would. It asserts the exit status; one message line that
names the problem and what to do (words given per case); no traceback; no file of the bad case in
the output folder (nothing at all when the whole run is refused); and, in batches, that the good CT
after the bad one still finishes. `python tests/test_bad_inputs.py` prints the table as Markdown.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

import bad_input_files as B
from RibFracSegLib import defaults
from RibFracSegLib.cli import main
from RibFracSegLib.cases import case_id as public_id
from RibFracSegLib.shipped import shipped_model
from RibFracSegLib.output_folder import output_folder

torch.set_num_threads(1)
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2  # linux/prctl.h, capability.h
# the messages, plus the detection table `segment` prints under a finished case ("  3  0.87  right rib 6, lateral ...")
LINE = re.compile(r"^(error: |warning: |\S+: \d+ fractures, |\d+ of \d+ CTs done|\S+: already done|\s+\d+\s+\d\.\d\d\s)")


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path, dict], list[str]]  # (folder for inputs, shared files) -> argv after `ribfracseg`
    status: int
    says: tuple[str, ...]  # words the message line contains: the problem and what to do
    kind: str = "case"  # case: refused, the good CT after it finishes | run: whole run refused | warns | accepted
    prefix: str = "error: "
    process: str = ""  # run as a separate process: "fsize" (a 4 KiB file-size limit), "readonly" (folder 0555)
    stream: str = ""  # where the command prints its messages: stderr for a refused run, else stdout


def seg(bad: Path | str, env: dict, *extra: str) -> list[str]:
    """`segment BAD GOOD`: the bad input first, a good CT after it."""
    return ["segment", str(bad), str(env["good"]), "--checkpoint", str(env["ckpt"]), "--out", str(env["out"]),
            "--threads", "1", *extra]


def seg_alone(path: Path | str, env: dict, *extra: str) -> list[str]:
    return ["segment", str(path), "--checkpoint", str(env["ckpt"]), "--out", str(env["out"]), "--threads", "1",
            *extra]


def train(tmp: Path, env: dict, *extra: str) -> list[str]:
    return ["train", "--data", str(tmp / "no-data"), "--out", str(env["out"]), *extra]


def l3(env: dict, *extra: str) -> list[str]:
    return ["l3", str(env["good"]), "--out", str(env["out"]), "--no-png", *extra]


def _nifti(tmp: Path, name: str, array: np.ndarray, spacing=B.SPACING) -> Path:
    return B.write(B.image(array, spacing), tmp / name)


def _with(array: np.ndarray, **values) -> np.ndarray:
    out = array.astype(np.float32)
    out[3, 5, 5] = values.get("at", np.nan)
    return out


def _heights(tmp: Path, text: str) -> Path:
    path = tmp / "heights.csv"
    path.write_text(text)
    return path


CT = B.ct_array()
CASES = [
    # --- files that are no CT at all
    Case("missing file", lambda t, e: seg(t / "absent.nii.gz", e), 2, ("not found", "give"), kind="run"),
    Case("empty file", lambda t, e: seg(B.cut(B.good_ct(t, "empty.nii.gz"), 0.0), e), 1, ("empty (0 bytes)", "copy it again")),
    Case("text file named .nii.gz", lambda t, e: seg(_text(t / "notes.nii.gz"), e), 1, ("not an image", "give")),
    Case("2-D image", lambda t, e: seg(B.write(B.image(CT[5], B.SPACING[:2]), t / "slice.nrrd"), e), 1,
         ("2-d", "whole series")),
    Case("4-D image", lambda t, e: seg(B.write(_join(B.image(CT), B.image(CT)), t / "series4d.nii.gz"), e), 1,
         ("4-d", "whole series")),
    Case("RGB image", lambda t, e: seg(_rgb(t / "colour.mha"), e), 1, ("3 components", "grey-scale")),
    Case("empty folder", lambda t, e: seg(_folder(t / "nothing"), e), 1, ("no dicom series", "point to")),
    Case("folder of non-DICOM files", lambda t, e: seg(_folder(t / "docs", "readme.txt"), e), 1,
         ("no dicom series", "point to")),
    # --- damaged files
    Case("truncated .nii.gz (gzip cut)", lambda t, e: seg(B.cut(B.good_ct(t, "cut.nii.gz"), 0.6), e), 1,
         ("truncated gzip", "download it again")),
    Case("corrupt .nii.gz (flipped byte)", lambda t, e: seg(B.flip_byte(B.good_ct(t, "flip.nii.gz")), e), 1,
         ("damaged", "again")),
    Case("truncated .nii", lambda t, e: seg(B.cut(B.good_ct(t, "cut.nii"), 0.9), e), 1,
         ("truncated", "bytes its header declares", "export it again")),
    Case("gzip of a truncated .nii", lambda t, e: seg(B.gzip_of_truncated_nifti(t), e), 1,
         ("truncated", "60%", "again")),
    Case("truncated .nrrd", lambda t, e: seg(B.cut(B.good_ct(t, "cut.nrrd"), 0.6), e), 1,
         ("truncated", "voxels do not", "export it again")),
    Case("truncated .mha", lambda t, e: seg(B.cut(B.good_ct(t, "cut.mha"), 0.6), e), 1,
         ("truncated", "voxels do not", "export it again")),
    # --- voxels that are not Hounsfield units
    Case("NaN voxels", lambda t, e: seg(_nifti(t, "nan.nii.gz", _with(CT)), e), 1, ("1 nan/inf", "re-export")),
    Case("Inf voxels", lambda t, e: seg(_nifti(t, "inf.nii.gz", _with(CT, at=np.inf)), e), 1, ("nan/inf", "re-export")),
    Case("MR volume (0-2000)", lambda t, e: seg(_nifti(t, "mr.nii.gz", (CT + 1000).astype(np.uint16) * 2), e), 1,
         ("not a ct in hounsfield", "mr", "give a ct")),
    Case("8-bit windowed export", lambda t, e: seg(_nifti(t, "png8.nii.gz", _window8(CT)), e), 1,
         ("8-bit", "original ct")),
    Case("0-255 export stored as int16", lambda t, e: seg(_nifti(t, "w16.nii.gz", _window8(CT).astype(np.int16)), e),
         1, ("8-bit windowed", "give a ct")),
    Case("missing rescale (air at 0)", lambda t, e: seg(_nifti(t, "raw.nii.gz", (CT + 1024).astype(np.uint16)), e),
         1, ("rescale intercept", "give a ct")),
    Case("float image 0-1", lambda t, e: seg(_nifti(t, "unit.nii.gz", ((CT + 1000) / 2000).astype(np.float32)), e),
         1, ("normalised", "before normalisation")),
    Case("HU shifted below -1500", lambda t, e: seg(_nifti(t, "shift.nii.gz", (CT - 3024).astype(np.int16)), e), 1,
         ("only values", "re-export")),
    Case("-3024 padding outside the FOV", lambda t, e: seg(_nifti(t, "pad.nii.gz", _padded(CT)), e), 0, (),
         kind="accepted"),
    # --- geometry
    Case("single slice (NIfTI)", lambda t, e: seg(_nifti(t, "one.nii.gz", CT[:1]), e), 1,
         ("single slice", "whole series")),
    Case("very small volume", lambda t, e: seg(_nifti(t, "crop.nii.gz", CT[:8, :12, :12]), e), 1,
         ("too small", "not a crop")),
    Case("12 mm slices", lambda t, e: seg(_nifti(t, "thick.nii.gz", CT[:6], (1.5, 1.5, 12.0)), e), 0,
         ("12 mm voxels", "invisible", "thin-slice"), kind="warns", prefix="warning: "),
    Case("larger than memory", lambda t, e: seg(B.huge_header(t), e), 1, ("gib to process", "crop or downsample")),
    Case("air only", lambda t, e: seg(_nifti(t, "air.nii.gz", np.full(B.SHAPE, -1000, np.int16)), e), 0, (),
         kind="accepted"),
    Case("no bone", lambda t, e: seg(_nifti(t, "soft.nii.gz", B.ct_array(bone=False)), e), 0, (), kind="accepted"),
    # --- DICOM folders
    Case("DICOM: good series", lambda t, e: seg(B.dicom_series(t / "dcm"), e), 0, (), kind="accepted"),
    Case("DICOM: CT and a scout", lambda t, e: seg(_two_series(t / "dcm"), e), 0,
         ("2 series", "largest ct series", "scout", "alone"), kind="warns", prefix="warning: "),
    Case("DICOM: CT beside a larger MR series", lambda t, e: seg(_ct_and_mr(t / "dcm"), e), 0,
         ("using the largest ct series ct 'chest' (24 files)", "not mr 't1' (30 files)"), kind="warns",
         prefix="warning: "),
    Case("DICOM: MR series only", lambda t, e: seg(B.dicom_series(t / "dcm", modality="MR", offset=1000), e), 1,
         ("no ct series", "mr", "give a ct series")),
    Case("DICOM: missing slices", lambda t, e: seg(B.dicom_series(t / "dcm", z_mm=_z(gap_after=10)), e), 1,
         ("7.50 mm gap", "about 2 missing", "complete series")),
    Case("DICOM: uneven spacing", lambda t, e: seg(B.dicom_series(t / "dcm", z_mm=_z(jitter=0.6)), e), 1,
         ("uneven slice spacing", "resample")),
    Case("DICOM: repeated slice", lambda t, e: seg(B.dicom_series(t / "dcm", z_mm=_z(repeat=4)), e), 1,
         ("same position", "alone")),
    Case("DICOM: gantry tilt", lambda t, e: seg(B.dicom_series(t / "dcm", tilt_mm_per_slice=0.5), e), 1,
         ("gantry tilt of 11.3", "resample")),
    Case("DICOM: one slice", lambda t, e: seg(B.dicom_series(t / "dcm", array=CT[:1]), e), 1,
         ("single slice", "whole series")),
    Case("DICOM: rescale lost", lambda t, e: seg(B.dicom_series(t / "dcm", offset=1024), e), 1,
         ("rescale intercept", "give a ct")),
    # --- checkpoints and arguments
    Case("checkpoint missing", lambda t, e: seg_alone(e["good"], e) + ["--checkpoint", str(t / "no.pt")], 2,
         ("not found", "check the path"), kind="run"),
    Case("checkpoint truncated", lambda t, e: seg_alone(e["good"], e) + ["--checkpoint", str(_cut_ckpt(t, e))], 2,
         ("not a readable pytorch checkpoint", "torch.save"), kind="run"),
    Case("checkpoint is a text file", lambda t, e: seg_alone(e["good"], e) + ["--checkpoint", str(_text(t / "x.pt"))],
         2, ("not a readable pytorch checkpoint",), kind="run"),
    Case("L3 checkpoint given to segment", lambda t, e: seg_alone(e["good"], e) + ["--checkpoint", str(e["l3"])], 2,
         ("--checkpoint l3_default.pt", "l3 locator", "needs a fracture checkpoint"), kind="run"),
    Case("overlap 1.0", lambda t, e: seg_alone(e["good"], e, "--overlap", "1.0"), 2, ("--overlap", "[0, 1)"),
         kind="run"),
    Case("threshold above 1", lambda t, e: seg_alone(e["good"], e, "--threshold", "1.5"), 2,
         ("--threshold", "[0, 1]"), kind="run"),
    Case("cuda without a GPU", lambda t, e: seg_alone(e["good"], e, "--device", "cuda"), 2,
         ("no cuda gpu", "--device cpu"), kind="run"),
    Case("fracture checkpoint given to l3", lambda t, e: l3(e, "--checkpoint", str(e["ckpt"])), 2,
         ("--checkpoint tiny.pt", "fracture checkpoint", "needs an l3 locator checkpoint"), kind="run"),
    Case("l3 checkpoint missing", lambda t, e: l3(e, "--checkpoint", str(t / "no.pt")), 2,
         ("not found", "check the path"), kind="run"),
    Case("height in centimetres", lambda t, e: l3(e, "--height", "175"), 2,
         ("--height 175", "metres", "give 1.75"), kind="run"),
    Case("negative height", lambda t, e: l3(e, "--height", "-1.7"), 2, ("--height -1.7", "metres"), kind="run"),
    Case("heights CSV in centimetres", lambda t, e: l3(e, "--heights", str(_heights(t, "name,height_m\ngood,172\n"))),
         2, ("--heights heights.csv: good 172", "give 1.72"), kind="run"),
    Case("heights CSV with a word", lambda t, e: l3(e, "--heights", str(_heights(t, "name,height_m\ngood,tall\n"))),
         2, ("'tall'", "not a number in metres"), kind="run"),
    Case("heights CSV wrong columns", lambda t, e: l3(e, "--heights", str(_heights(t, "case,cm\ngood,172\n"))), 2,
         ("expected columns name,height_m",), kind="run"),
    Case("train: VAE patch not divisible by 16", lambda t, e: train(t, e, "--arch", "segresnet_vae", "--hparams",
                                                                    '{"use_vae": true}', "--patch-size", "40"), 2,
         ("--patch-size 40", "divisible by 16"), kind="run", stream="err"),
    Case("train: --hparams not JSON", lambda t, e: train(t, e, "--hparams", "{first_out_channels: 4}"), 2,
         ("--hparams is not json", "give e.g."), kind="run", stream="err"),
    Case("train: unknown --arch", lambda t, e: train(t, e, "--arch", "unet9000"), 2,
         ("--arch unet9000: unknown network", "registered: "), kind="run", stream="err"),
    Case("train: unknown hyper-parameter", lambda t, e: train(t, e, "--hparams", '{"depth": 3}'), 2,
         ("does not accept hyper-parameters ['depth']",), kind="run", stream="err"),
    Case("train: data folder missing", lambda t, e: train(t, e), 2,
         ("data folder not found", "give a ribfrac-layout folder"), kind="run", stream="err"),
    # --- the output folder
    Case("output folder in use", lambda t, e: seg_alone(e["good"], e), 2,
         ("another ribfracseg run", "choose another output folder"), kind="run"),
    Case("disk full (file-size limit)", lambda t, e: seg(e["good"], e, "--probability"), 1,
         ("no space left", "free space", "rerun", "stopped: 2 of 2"), kind="stopped", process="fsize"),
    Case("read-only output folder", lambda t, e: seg_alone(e["good"], e), 2,
         ("read-only", "choose a writable output folder"), kind="run", process="readonly"),
    Case("output path is a file", lambda t, e: seg_alone(e["good"], dict(e, out=_text(t / "out.txt"))), 2,
         ("is a file", "choose a folder"), kind="run"),
]


def _text(path: Path) -> Path:
    path.write_text("patient notes, not an image\n")
    return path


def _folder(path: Path, *names: str) -> Path:
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_text("not DICOM\n")
    return path


def _rgb(path: Path):
    import SimpleITK as sitk

    rgb = np.repeat(((CT + 1000) // 8).clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return B.write(sitk.GetImageFromArray(rgb, isVector=True), path)


def _join(*images):
    import SimpleITK as sitk

    return sitk.JoinSeries(list(images))


def _window8(array: np.ndarray) -> np.ndarray:
    lo, hi = defaults.L3_OVERLAY_WINDOW_HU
    return ((array.clip(lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)


def _padded(array: np.ndarray) -> np.ndarray:
    out = array.copy()
    out[:, :3, :] = -3024
    return out


def _two_series(folder: Path) -> Path:
    B.dicom_series(folder)
    return B.dicom_series(folder, array=CT[:2], series="2", description="scout")


def _ct_and_mr(folder: Path) -> Path:
    B.dicom_series(folder)
    mr = np.concatenate([CT, CT[:6]]) + 1000
    return B.dicom_series(folder, array=mr, modality="MR", series="2", description="t1")


def _z(gap_after: int | None = None, jitter: float = 0.0, repeat: int | None = None) -> list[float]:
    z = [k * B.SPACING[2] + (jitter if k % 2 else 0.0) for k in range(B.SHAPE[0])]
    if gap_after is not None:
        z = [v + (2 * B.SPACING[2] if k >= gap_after else 0.0) for k, v in enumerate(z)]
    if repeat is not None:
        z[repeat] = z[repeat - 1]
    return z


def _cut_ckpt(tmp: Path, env: dict) -> Path:
    path = tmp / "cut.pt"
    path.write_bytes(env["ckpt"].read_bytes()[:5000])
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("shared")
    return {"good": B.good_ct(folder), "ckpt": B.tiny_fracture_checkpoint(folder / "tiny.pt"),
            "l3": shipped_model("l3")}


def _preexec(process: str) -> Callable[[], None]:
    def limit() -> None:
        if process == "fsize":  # writes past 4 KiB fail with EFBIG, as on a full disk
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        elif os.geteuid() == 0:  # root ignores permission bits: give up the capabilities that allow it
            libc = ctypes.CDLL(None, use_errno=True)
            for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
                if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "cannot drop a capability to simulate a read-only folder")
    return limit


@dataclass
class Outcome:
    status: int
    lines: list[str]
    stderr: str
    argv: list[str]
    out: Path


def run_case(case: Case, tmp: Path, shared: dict) -> Outcome:
    """Run one case in this process or (faults) in its own, as a user would."""
    env = dict(shared, out=tmp / "out")
    (tmp / "in").mkdir()
    argv = case.make(tmp / "in", env)
    stream = case.stream or ("err" if case.kind == "run" else "out")
    if case.process:
        if case.process == "readonly":
            env["out"].mkdir()
            env["out"].chmod(0o555)
        run = subprocess.run([sys.executable, "-m", "RibFracSegLib", *argv], capture_output=True, encoding="utf-8",
                             preexec_fn=_preexec(case.process), errors="replace",
                             env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8"),
                             timeout=300)
        printed, other = (run.stdout, run.stderr) if stream == "out" else (run.stderr, run.stdout)
        return Outcome(run.returncode, printed.splitlines(), other, argv, env["out"])
    lock = output_folder(env["out"]) if case.id == "output folder in use" else contextlib.nullcontext()
    out, err = io.StringIO(), io.StringIO()
    with lock, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    printed, other = (out, err) if stream == "out" else (err, out)
    return Outcome(status, printed.getvalue().splitlines(), other.getvalue(), argv, env["out"])


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input(case: Case, tmp_path, shared):
    outcome = run_case(case, tmp_path, shared)
    lines, printed = outcome.lines, "\n".join(outcome.lines)
    assert "Traceback" not in printed + outcome.stderr
    assert all(LINE.match(line) for line in lines), printed  # every message is one line
    assert outcome.status == case.status, printed
    if case.kind == "accepted":
        assert not any(line.startswith(("error: ", "warning: ")) for line in lines), printed
    else:
        messages = [line for line in lines if line.startswith(case.prefix)]
        assert any(all(word.lower() in m.lower() for word in case.says) for m in messages), printed
    out = outcome.out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert not [f for f in files if ".partial-" in f or f == ".ribfracseg.lock"], files
    if case.kind in ("run", "alone", "stopped"):
        assert files == [], files
        return
    done = {p.name[: -len(".json")] for p in out.glob("*.json")}
    bad = public_id(Path(outcome.argv[1]))
    assert done == ({"good"} if case.kind == "case" else {"good", bad}), files
    assert not [f for f in files if f.startswith(bad)] or case.kind != "case", files
    summary = json.loads((out / "good.json").read_text())
    assert summary["warnings"] == [] and summary["patches_total"] > 0


def table() -> str:
    """The cases as a Markdown table (status, message), run in a temporary folder."""
    rows = ["| case | exit | message |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        shared = {"good": B.good_ct(Path(folder)), "ckpt": B.tiny_fracture_checkpoint(Path(folder) / "tiny.pt"),
                  "l3": shipped_model("l3")}
        for n, case in enumerate(getattr(c, "values", (c,))[0] for c in CASES):
            tmp = Path(folder) / str(n)
            tmp.mkdir()
            outcome = run_case(case, tmp, shared)
            status = outcome.status
            said = [line for line in outcome.lines if line.startswith(("error: ", "warning: "))]
            message = said[0] if said else "(processed; no message)"
            message = message.replace(str(tmp), "…").replace(folder, "…").replace("|", "\\|")
            rows.append(f"| {case.id} | {status} | {message} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
