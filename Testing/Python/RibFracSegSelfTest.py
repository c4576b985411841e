"""RibFracSeg self-test inside 3D Slicer, no GUI needed:

    Slicer --no-main-window --python-script Testing/Python/RibFracSegSelfTest.py [--keep WORKDIR] [--quick]

Generates marked phantoms (LPS and oblique storage), runs the module's Logic in Slicer's process
and in a PythonSlicer subprocess, checks segments, points, table, files and Cancel against numbers
known in advance (RibFracSegLogicLib.selftest, the same checks pytest runs), prints every problem
and exits 0 on success, 1 on failure, 2 (skipped) when a required package — PyTorch or a line of
requirements.txt — is missing, naming it.
"""

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIPPED = 2  # CTest's SKIP_RETURN_CODE for this test (Testing/Python/CMakeLists.txt)


def _add_source_tree_to_path() -> None:
    """Run from a source checkout without installing: find the module's helpers and the library."""
    for folder in (REPO / "RibFracSeg", REPO):
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def run(scene, workdir: Path, quick: bool = False) -> int:
    """The checks on `scene`; returns the exit code (0 pass, 1 fail, 2 skipped: a requirement is missing)."""
    from RibFracSegLogicLib.dependencies import missing_message, missing_requirements

    missing = missing_requirements()  # torch and every line of requirements.txt, at their versions
    if missing:
        print(f"RibFracSeg self-test skipped: {missing_message(missing)} Then re-run.")
        return SKIPPED
    from RibFracSegLogicLib.selftest import run_selftest

    orientations = ("oblique",) if quick else ("LPS", "oblique")
    problems = run_selftest(scene, workdir, orientations=orientations, background=not quick)
    for problem in problems:
        print(f"FAIL: {problem}")
    print(f"RibFracSeg self-test: {'FAILED with %d problem(s)' % len(problems) if problems else 'passed'}")
    return 1 if problems else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="RibFracSeg self-test (run inside Slicer)")
    parser.add_argument("--keep", type=Path, help="write the test files here and keep them")
    parser.add_argument("--quick", action="store_true", help="one phantom, no background run")
    args, _ = parser.parse_known_args(argv)  # Slicer may leave its own arguments in sys.argv
    _add_source_tree_to_path()
    import slicer

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="RibFracSegSelfTest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return run(slicer.mrmlScene, workdir, quick=args.quick)
    except Exception:  # any crash is a failure with its traceback, never a hang
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    exit_code = main(sys.argv[1:])
    import slicer

    if hasattr(slicer, "app"):  # inside Slicer: quit the application with this status
        slicer.util.exit(exit_code)
    sys.exit(exit_code)
