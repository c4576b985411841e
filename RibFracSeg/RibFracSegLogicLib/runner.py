"""A run in a PythonSlicer subprocess that Slicer polls: progress, stage times, cancel by kill.

Why a subprocess (not a thread): Cancel must act within ~2 s even in the middle of a CPU batch or
of post-processing that holds the GIL, and only killing a process does that; a CUDA abort or an
out-of-memory kill takes down the worker, not the user's Slicer session with its unsaved scene;
and torch's threads never compete with Slicer's GUI thread for the GIL. The price — writing the
CT once to a local NRRD — is paid in a helper thread, so the GUI thread only copies the voxels.

Qt-free on purpose: the panel calls `poll()` from a QTimer; the console calls `wait()`.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

import SimpleITK as sitk

from . import exchange, processes
from .compute import RunOptions, RunOutput
from .worker import PREFIX

logger = logging.getLogger("RibFracSeg")

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
LOG_TAIL = 20  # lines of worker output kept to explain a failure


class BackgroundRun:
    """One CT through `compute` in a subprocess. Start, then poll() until `state` is not RUNNING."""

    def __init__(self, image: sitk.Image, options: RunOptions, preload: Sequence[str] = (),
                 python: Optional[str] = None) -> None:
        self.options = options.validate()
        self.state = RUNNING
        self.error: Optional[str] = None
        self.progress = (0, 0)  # (patches done, patches total) as the library reports them
        self.stage_seconds: dict[str, float] = {}
        self.log_tail: list[str] = []
        self.started = time.perf_counter()
        self._folder = Path(tempfile.mkdtemp(prefix="RibFracSeg-"))
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._lock = threading.Lock()
        self._process: Optional[subprocess.Popen] = None
        self._cancel_requested = False
        self._saw_done = False
        command = [python or processes.python_executable(), "-m", "RibFracSegLogicLib.worker", str(self._folder)]
        for name in preload:
            command += ["--preload", name]
        self._thread = threading.Thread(target=self._launch_and_read, args=(image, command), daemon=True)
        self._thread.start()

    # -- helper thread ----------------------------------------------------------------------------
    def _launch_and_read(self, image: sitk.Image, command: list[str]) -> None:
        try:
            exchange.write_input(self._folder, image, self.options)
            with self._lock:
                if self._cancel_requested:
                    return
                self._process = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                    env=processes.worker_environment(), **processes.popen_options())
            for line in self._process.stdout:
                self._lines.put(line.rstrip("\n"))
            self._process.wait()
        except Exception as err:  # e.g. disk full writing the input: becomes the run's error
            self._lines.put(f"{PREFIX} ERROR could not start the background run: {err}")
        finally:
            self._lines.put(None)  # end of output

    # -- GUI/console thread -----------------------------------------------------------------------
    def poll(self) -> list[str]:
        """Consume what the worker said since the last call; returns its plain log lines."""
        plain: list[str] = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return plain
            if line is None:
                self._finish()
                return plain
            if not self._handle(line):
                plain.append(line)
                self.log_tail = (self.log_tail + [line])[-LOG_TAIL:]

    def _handle(self, line: str) -> bool:
        if not line.startswith(PREFIX + " "):
            return False
        kind, _, rest = line[len(PREFIX) + 1:].partition(" ")
        if kind == "PROGRESS":
            done, total = rest.split()
            self.progress = (int(done), int(total))
        elif kind == "STAGE":
            name, seconds = rest.split()
            self.stage_seconds[name] = float(seconds)
            logger.info("RibFracSeg: stage %s took %s s", name, seconds)
        elif kind == "ERROR":
            self.error = rest
        elif kind == "DONE":
            self._saw_done = True
        return True

    def _finish(self) -> None:
        if self.state != RUNNING:
            return
        code = self._process.returncode if self._process is not None else None
        if self._saw_done and code == 0 and (self._folder / exchange.RESULT_NAME).exists():
            self.state = DONE
            return
        self.state = FAILED
        if self.error is None:
            self.error = f"background run ended with exit code {code}: " + " | ".join(self.log_tail[-5:])
        logger.error("RibFracSeg: %s\nLast worker output:\n%s", self.error, "\n".join(self.log_tail))
        self._cleanup()

    def cancel(self) -> None:
        """Kill the worker's whole process tree now (PythonSlicer is a launcher with the real Python
        as its child: see processes.py); nothing reaches the scene. Returns within ~2 s."""
        with self._lock:
            self._cancel_requested = True
            process = self._process
        if process is not None:
            processes.kill_tree(process)
            if process.poll() is None:
                logger.warning("RibFracSeg: the background process did not end within 2 s of Cancel")
        self._thread.join(timeout=processes.KILL_WAIT_S)
        self.state = CANCELLED
        self._cleanup()

    def wait(self, timeout: Optional[float] = None, interval: float = 0.1) -> str:
        """Poll until the run ends (console use); returns the final state."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while self.state == RUNNING and (deadline is None or time.perf_counter() < deadline):
            self.poll()
            if self.state == RUNNING:
                time.sleep(interval)
        return self.state

    def output(self) -> RunOutput:
        """The finished run's results (only when state == DONE); the temporary files are removed."""
        if self.state != DONE:
            raise RuntimeError(f"No result: the run is {self.state}" + (f" ({self.error})" if self.error else ""))
        try:
            return exchange.read_output(self._folder)
        finally:
            self._cleanup()

    @property
    def workdir(self) -> Path:
        """The temporary exchange folder (removed when the run ends, fails or is cancelled)."""
        return self._folder

    @property
    def returncode(self) -> Optional[int]:
        """The worker's exit code (negative: killed by that signal); None while it runs or before it starts."""
        return None if self._process is None else self._process.poll()

    def fraction(self) -> float:
        done, total = self.progress
        return done / total if total else 0.0

    def _cleanup(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
