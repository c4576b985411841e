"""Starting and stopping the background worker the way Slicer's own helpers do, on every platform.

Reviewed against Slicer's source (Base/Python/slicer/util.py: launchConsoleProcess, startupEnvironment,
executePythonModule; the CTK AppLauncher behind PythonSlicer), 5.6 to main:

- `PythonSlicer` (PythonSlicer.exe on Windows) is a launcher: it reads SlicerLauncherSettings.ini, sets
  PATH/PYTHONPATH/library paths, then starts the real interpreter (bin/python-real[.exe]) as its CHILD
  and waits for it. So the Popen pid is the launcher's, and the computing process is its child.
- Cancel must therefore end the whole process tree. POSIX: the worker starts in a new session
  (start_new_session), the launcher's child inherits that process group, and one killpg(SIGKILL) ends
  both. Windows: TerminateProcess (Popen.kill) would end only the launcher and leave python-real.exe
  computing, so cancel runs `taskkill /F /T /PID <launcher pid>`, which ends the launcher and every
  descendant (the /T tree walk), then Popen.kill() as a last resort.
- No console window per run: launchConsoleProcess hides it with STARTUPINFO (STARTF_USESHOWWINDOW,
  wShowWindow = SW_HIDE). We do the same rather than CREATE_NO_WINDOW: with a hidden console the
  launcher's child python-real.exe inherits that hidden console instead of opening a window of its own.
  taskkill itself runs with CREATE_NO_WINDOW (it starts no children).
- Environment: launchConsoleProcess uses slicer.util.startupEnvironment() (the environment Slicer was
  started with, without the launcher's additions) so that PythonSlicer's launcher sets its paths up
  cleanly instead of stacking them on Slicer's own. Inside Slicer the worker gets that environment plus
  our PYTHONPATH; outside Slicer (pytest, PythonSlicer console) the current environment.
We do not call launchConsoleProcess itself: it cannot start a new process group (needed for the POSIX
tree kill) and its non-blocking mode needs Qt, while the runner must stay Qt-free for the console.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

STARTF_USESHOWWINDOW, SW_HIDE = 0x00000001, 0  # Windows constants, as slicer.util.launchConsoleProcess uses them
CREATE_NO_WINDOW = 0x08000000
KILL_WAIT_S = 2.0  # Cancel returns within this


def python_executable() -> str:
    """Slicer's own interpreter launcher (PythonSlicer) inside Slicer, else the current interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def slicer_startup_environment() -> Optional[dict[str, str]]:
    """slicer.util.startupEnvironment() inside the Slicer application, None elsewhere."""
    try:
        import slicer

        if not hasattr(slicer, "app"):
            return None
        return dict(slicer.util.startupEnvironment())
    except (ImportError, AttributeError):
        return None


def worker_environment(base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """`base` (default: Slicer's startup environment, else ours) with the folders that hold
    RibFracSegLogicLib and RibFracSegLib first on PYTHONPATH (source tree or installed extension)."""
    import RibFracSegLib

    if base is None:
        base = slicer_startup_environment() or dict(os.environ)
    paths = [str(Path(__file__).resolve().parent.parent), str(Path(RibFracSegLib.__file__).resolve().parent.parent)]
    env = dict(base)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths + rest))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def popen_options(platform: str = os.name) -> dict:
    """Popen keyword arguments: own process group (POSIX) / hidden console (Windows)."""
    if platform == "posix":
        return {"start_new_session": True}
    info = subprocess.STARTUPINFO()
    info.dwFlags |= STARTF_USESHOWWINDOW
    info.wShowWindow = SW_HIDE
    return {"startupinfo": info}


def taskkill_command(pid: int) -> list[str]:
    """Windows: end `pid` and all its descendants, forcefully (the launcher and python-real.exe)."""
    return ["taskkill", "/F", "/T", "/PID", str(int(pid))]


def kill_tree(process: subprocess.Popen, platform: str = os.name) -> None:
    """End the process and everything it started; wait up to KILL_WAIT_S for it to be gone."""
    if platform == "posix":  # even when the launcher is gone: its child may still be in the group
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elif process.poll() is None:
        try:
            subprocess.run(taskkill_command(process.pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           creationflags=CREATE_NO_WINDOW, check=False, timeout=KILL_WAIT_S)
        except (OSError, subprocess.TimeoutExpired):  # no taskkill, or it hung: at least end the launcher
            pass
        if process.poll() is None:
            process.kill()
    try:
        process.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        pass
