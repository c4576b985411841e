"""RibFracSeg self-test inside 3D Slicer, no GUI needed:

    Slicer --no-main-window --python-script Testing/Python/RibFracSegSelfTest.py [--keep WORKDIR] [--quick] [--installed]

Tests the source tree this script is in, even when Slicer loaded an installed copy of the module at
start-up (that copy is set aside); --installed tests the copy Slicer loaded instead (CTest: the build
tree). It prints which copy it tests. Generates marked phantoms (LPS and oblique storage), runs the module's Logic in Slicer's process
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


OWN_PACKAGES = ("RibFracSegLogicLib", "RibFracSegLib")


def use_copy(installed: bool = False) -> Path:
    """Import the module's packages from the copy under test and return its folder (the library's parent).

    By default the source tree beside this script: it goes first on sys.path, and packages Slicer already
    imported from an installed copy at start-up are forgotten so they are imported again from here (else
    the installed copy would be tested without a word). With `installed`, the copy Slicer loaded.
    Raises ImportError naming the copy when the packages are not where they were asked from."""
    if not installed:
        for folder in (str(REPO), str(REPO / "RibFracSeg")):  # RibFracSeg/ ends up first
            if folder in sys.path:
                sys.path.remove(folder)
            sys.path.insert(0, folder)
        if any(name in sys.modules for name in OWN_PACKAGES):  # loaded at start-up: from wherever it was
            from RibFracSegLogicLib.reload import forget_own_modules

            forget_own_modules(OWN_PACKAGES)
    try:
        import RibFracSegLib
        import RibFracSegLogicLib
    except ImportError as err:
        raise ImportError(f"RibFracSeg is not installed in this Slicer ({err}); run without --installed to test "
                          f"the source tree {REPO}") from err
    library = Path(RibFracSegLib.__file__).parent.parent
    logic = Path(RibFracSegLogicLib.__file__).parent.parent
    if not installed and (library, logic) != (REPO, REPO / "RibFracSeg"):
        raise ImportError(f"the source tree {REPO} was asked for, but RibFracSeg comes from {logic} and {library}")
    print(f"RibFracSeg self-test of {'the installed copy' if installed else 'the source tree'}: {logic}, {library}")
    return library


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
    parser.add_argument("--installed", action="store_true",
                        help="test the copy Slicer loaded (installed extension, build tree), not this source tree")
    args, _ = parser.parse_known_args(argv)  # Slicer may leave its own arguments in sys.argv
    import slicer

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="RibFracSegSelfTest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        use_copy(installed=args.installed)
    except ImportError as err:  # the copy asked for is not the one that can be imported
        print(f"RibFracSeg self-test FAILED: {err}")
        return 1
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
