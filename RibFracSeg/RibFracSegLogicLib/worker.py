"""Subprocess entry: `PythonSlicer -m RibFracSegLogicLib.worker FOLDER [--preload MODULE ...]`.

Reads the CT and options `exchange.write_input` left in FOLDER, runs `compute`, writes the result
with `exchange.write_output` and talks to Slicer through one line per event on stdout:
    RIBFRACSEG PROGRESS <done> <total>
    RIBFRACSEG STAGE <name> <seconds>
    RIBFRACSEG DONE
    RIBFRACSEG ERROR <message>
Cancel is the parent killing this process: nothing is written under the final result name until
the run succeeded (result.json is written last, atomically).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path

PREFIX = "RIBFRACSEG"


def emit(kind: str, *fields: object) -> None:
    print(" ".join([PREFIX, kind, *(str(f) for f in fields)]), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--preload", action="append", default=[],
                        help="import this module first (e.g. one that registers a network)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    try:
        for name in args.preload:
            importlib.import_module(name)
        from RibFracSegLogicLib.compute import compute
        from RibFracSegLogicLib.exchange import read_input, write_output

        start = time.perf_counter()
        image, options = read_input(args.folder)
        emit("STAGE", "read_input", f"{time.perf_counter() - start:.3f}")
        output = compute(image, options, progress=lambda done, total: emit("PROGRESS", done, total))
        for stage, seconds in output.timings_s.items():
            emit("STAGE", stage, f"{seconds:.3f}")
        start = time.perf_counter()
        write_output(args.folder, output)
        emit("STAGE", "write_output", f"{time.perf_counter() - start:.3f}")
    except Exception as err:  # reported to the panel as the run's error, with the traceback in the log
        logging.exception("RibFracSeg worker failed")
        emit("ERROR", f"{type(err).__name__}: {err}".replace("\n", " "))
        return 1
    emit("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
