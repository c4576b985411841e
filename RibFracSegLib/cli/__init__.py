"""`ribfracseg` command line: one sub-command a module in this package.

Each module exposes `add_arguments(parser)` and `run(args) -> int` and imports heavy packages
(torch) only inside `run`, so `ribfracseg --help` stays fast. A bad argument or an unreadable file
ends any command with one line on stderr naming it and exit status 2, never a traceback: argparse's
own errors, and the library's `InputError`/`CheckpointError` and file errors escaping `run` (`main`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules missing from a checkout are simply not offered.
COMMANDS = {
    "demo": ("RibFracSegLib.cli.demo", "generate a phantom, segment it with the embedded default, compare to truth"),
    "phantom": ("RibFracSegLib.cli.phantom", "write synthetic chest/abdomen CT phantoms in the RibFrac layout"),
    "segment": ("RibFracSegLib.cli.segment", "detect and segment rib fractures in CTs"),
    "ribs": ("RibFracSegLib.cli.ribs", "segment and number the 24 ribs of CTs"),
    "evaluate": ("RibFracSegLib.cli.evaluate", "RibFrac-challenge FROC, Dice and classification of predictions"),
    "train": ("RibFracSegLib.cli.train", "train a fracture network on a RibFrac-layout data set"),
    "simulate-fractures": ("RibFracSegLib.cli.simulate", "build rib fractures into real CTs (RibFrac layout) for training"),
    "l3": ("RibFracSegLib.cli.l3", "locate the L3 slice and measure body composition"),
    "train-candidates": ("RibFracSegLib.cli.train_candidates", "train the second stage (fracture or not, and its type) into a fracture checkpoint"),
    "calibrate-precision": ("RibFracSegLib.cli.calibrate", "choose the fastest precision that keeps a fracture checkpoint's fractures, store it in the checkpoint"),
    "train-l3": ("RibFracSegLib.cli.train_l3", "train the L3 locator"),
    "train-frame": ("RibFracSegLib.cli.train_frame", "train a fracture detector along straightened ribs (rib frame), resumable"),
    "calibrate-frame": ("RibFracSegLib.cli.calibrate_frame", "choose a rib-frame checkpoint's confidence floor on its training CTs (never the held-out one), store it"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (the usage block is what --help is for)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_log(folder):
    """A training run's log: each message printed and appended to <folder>/train.log (line-buffered, so a
    run stopped midway keeps every line); the folder is made."""
    from pathlib import Path

    Path(folder).mkdir(parents=True, exist_ok=True)
    log_file = open(Path(folder) / "train.log", "a", buffering=1, encoding="utf-8")

    def log(message: str) -> None:
        print(message, flush=True)
        log_file.write(message + "\n")

    return log


def refuse(err: BaseException | str) -> int:
    """Print `error: <message>` as one line on stderr; the exit status of a refused run (2)."""
    named = isinstance(err, OSError) and err.filename and err.strerror
    text = f"{err.filename}: {err.strerror}" if named else str(err)  # FileNotFoundError: "PATH: No such file..."
    print("error: " + " ".join(text.split()), file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from RibFracSegLib import __version__

    parser = _Parser(prog="ribfracseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ribfracseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue
            raise
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from RibFracSegLib.errors import CheckpointError, InputError

    try:
        return int(args._run(args) or 0)
    except (InputError, CheckpointError, OSError) as err:  # OSError: unreadable or missing files, full disks
        return refuse(err)


if __name__ == "__main__":
    sys.exit(main())
