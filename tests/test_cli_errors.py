"""Every subcommand answers a missing file and a malformed value with one line on stderr naming it and
exit status 2, never a traceback (the guard in cli.main, argparse's one-line errors, and each command's
own checks before any work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from RibFracSegLib.cli import COMMANDS, main

MISSING = "/nonexistent/ribfracseg-missing"


def _ct(tmp: Path) -> str:
    path = tmp / "notes.nii.gz"  # exists; never read, because another argument is refused first
    path.write_text("x")
    return str(path)


def _corpus(tmp: Path) -> str:
    for split in ("train", "val"):
        (tmp / "corpus" / split).mkdir(parents=True)
        (tmp / "corpus" / split / "case.json").write_text("{}")
    return str(tmp / "corpus")


def _not_a_checkpoint(tmp: Path) -> str:
    path = tmp / "notes.pt"
    path.write_text("patient notes, not a checkpoint\n")
    return str(path)


# command -> [(what is wrong, argv after `ribfracseg` given a tmp folder, text the line must name)]
CASES = {
    "demo": [("missing checkpoint", lambda t: ["demo", "--checkpoint", MISSING + ".pt", "--out", str(t)], MISSING),
             ("size not a number", lambda t: ["demo", "--size", "big"], "'big'"),
             ("size too small", lambda t: ["demo", "--size", "8", "--out", str(t)], "--size 8")],
    "phantom": [("output under a file", lambda t: ["phantom", "--out", _ct(t) + "/sub"], "notes.nii.gz"),
                ("too many fractures", lambda t: ["phantom", "--out", str(t), "--fractures", "11"], "--fractures 11")],
    "segment": [("missing CT", lambda t: ["segment", MISSING + ".nii.gz", "--out", str(t / "o")], MISSING),
                ("threshold above 1", lambda t: ["segment", _ct(t), "--out", str(t / "o"), "--threshold", "1.5"],
                 "--threshold")],
    "ribs": [("missing CT", lambda t: ["ribs", MISSING + ".nii.gz", "--out", str(t / "o")], MISSING),
             ("flag given a value", lambda t: ["ribs", _ct(t), "--out", str(t / "o"), "--unfold=yes"], "--unfold")],
    "evaluate": [("missing truth", lambda t: ["evaluate", "--pred", str(t), "--gt", MISSING], MISSING),
                 ("unknown sort kind", lambda t: ["evaluate", "--pred", str(t), "--gt", str(t), "--sort-kind", "fast"],
                  "'fast'")],
    "train": [("missing data", lambda t: ["train", "--data", MISSING, "--out", str(t / "o")], MISSING),
              ("hparams not JSON", lambda t: ["train", "--data", str(t), "--hparams", "{x"], "--hparams")],
    "simulate-fractures": [("missing CT", lambda t: ["simulate-fractures", MISSING + ".nii.gz", "--ribs", "auto",
                                                     "--out", str(t / "o")], MISSING),
                           ("no cases", lambda t: ["simulate-fractures", _ct(t), "--ribs", "auto", "--out", str(t),
                                                   "--n", "0"], "--n 0")],
    "l3": [("missing CT", lambda t: ["l3", MISSING + ".nii.gz", "--out", str(t / "o")], MISSING),
           ("height in cm", lambda t: ["l3", _ct(t), "--out", str(t / "o"), "--height", "175"], "--height 175")],
    "train-candidates": [("missing corpus", lambda t: ["train-candidates", "--corpus", MISSING, "--out", str(t / "c.pt")],
                          MISSING),
                         ("tolerance above 1", lambda t: ["train-candidates", "--corpus", _corpus(t), "--out",
                                                          str(t / "c.pt"), "--tolerance", "1.5"], "--tolerance 1.5"),
                         ("bad --init", lambda t: ["train-candidates", "--corpus", _corpus(t), "--out", str(t / "c.pt"),
                                                   "--init", _not_a_checkpoint(t)], "notes.pt")],
    "calibrate-precision": [("missing CT", lambda t: ["calibrate-precision", MISSING + ".nii.gz", "--out",
                                                      str(t / "c.pt")], MISSING),
                            ("unknown precision", lambda t: ["calibrate-precision", _ct(t), "--out", str(t / "c.pt"),
                                                             "--candidates", "fp64"], "'fp64'")],
    "train-l3": [("missing npz", lambda t: ["train-l3", "--npz", MISSING + ".npz", "--out", str(t / "l3.pt")], MISSING),
                 ("z not a number", lambda t: ["train-l3", "--phantoms", "1", "--val-ct", _ct(t) + "=abc", "--out",
                                               str(t / "l3.pt")], "abc"),
                 ("bad --init", lambda t: ["train-l3", "--phantoms", "1", "--init", _not_a_checkpoint(t), "--out",
                                           str(t / "l3.pt")], "notes.pt"),
                 ("missing --init", lambda t: ["train-l3", "--phantoms", "1", "--init", MISSING + ".pt", "--out",
                                               str(t / "l3.pt")], MISSING)],
    "train-frame": [("missing real CT folder", lambda t: ["train-frame", "--real", MISSING, "--lidc", "none", "--out",
                                                          str(t / "o")], MISSING),
                    ("hparams not JSON", lambda t: ["train-frame", "--hparams", "{x", "--out", str(t / "o")], "--hparams"),
                    ("missing --resume", lambda t: ["train-frame", "--real", "none", "--lidc", "none", "--resume",
                                                    MISSING + ".pt", "--out", str(t / "o")], MISSING)],
    "calibrate-frame": [("missing checkpoint", lambda t: ["calibrate-frame", "--checkpoint", MISSING + ".pt", "--out",
                                                          str(t / "c.pt")], MISSING),
                        ("no fractures", lambda t: ["calibrate-frame", "--checkpoint", MISSING + ".pt", "--out",
                                                    str(t / "c.pt"), "--fractures", "0"], "--fractures 0")],
}


def test_every_command_has_cases():
    assert set(CASES) == set(COMMANDS)


@pytest.mark.parametrize("command,what,make,names",
                         [(c, w, m, n) for c, cases in CASES.items() for w, m, n in cases],
                         ids=[f"{c}: {w}" for c, cases in CASES.items() for w, _, _ in cases])
def test_bad_argument_is_one_line_and_exit_2(command, what, make, names, tmp_path, capsys):
    try:
        status = main(make(tmp_path))
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, (out, err)
    assert "Traceback" not in out + err
    assert len(lines) == 1 and "error: " in lines[0], err
    assert names in lines[0], lines[0]
