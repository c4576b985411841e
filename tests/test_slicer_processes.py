"""Cancel ends the worker's whole process tree: PythonSlicer is a launcher whose child does the work.

A stand-in launcher (a script that starts the real interpreter as its child and waits, as
PythonSlicer does) shows what a plain kill leaves behind and that Cancel leaves nothing (POSIX here;
the Windows path is reviewed in RibFracSegLogicLib/processes.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slicer_cases import probe_case
from slicer_scene import MODULE_DIR, REPO

from RibFracSegLogicLib import probe, processes  # noqa: E402
from RibFracSegLogicLib.runner import CANCELLED, RUNNING, BackgroundRun  # noqa: E402
from RibFracSegLogicLib.volumes import image_from_volume_node  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
torch.set_num_threads(2)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it no longer exists."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie (killed, not yet reaped) is dead."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def gone_within(pids, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory) -> Path:
    """An executable 'PythonSlicer': starts the interpreter as its child with the same arguments and waits."""
    path = tmp_path_factory.mktemp("bin") / "PythonSlicer"
    path.write_text(f"#!{sys.executable}\nimport subprocess, sys\n"
                    "sys.exit(subprocess.call([sys.executable, *sys.argv[1:]]))\n")
    path.chmod(0o755)
    return path


def _wait_for_child(pid: int, timeout: float = 30.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while not descendants(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return descendants(pid)


def test_a_plain_kill_of_the_launcher_leaves_its_child_computing_and_kill_tree_ends_it(launcher):
    process = subprocess.Popen([str(launcher), "-c", "import time; time.sleep(120)"], **processes.popen_options())
    children = _wait_for_child(process.pid)
    assert len(children) == 1
    process.kill()  # what Popen.kill / TerminateProcess does: the launcher only
    process.wait(timeout=5)
    assert all(alive(c) for c in children)  # the real interpreter is still there
    processes.kill_tree(process)
    assert gone_within(children)


def test_cancel_mid_run_leaves_no_process_of_the_tree_alive(launcher, tmp_path):
    case = probe_case(tmp_path)
    holder, logic, volume, checkpoint = case.holder, case.logic, case.volume, case.checkpoint
    before = holder.node_ids()
    run = BackgroundRun(image_from_volume_node(volume), logic.options(checkpoint, device="cpu"),
                        preload=[probe.MODULE], python=str(launcher))
    while run.state == RUNNING and run.progress[1] == 0:  # until the worker is inside the patch loop
        run.poll()
        time.sleep(0.02)
    assert run.state == RUNNING, run.error
    tree = {run._process.pid} | descendants(run._process.pid)
    commands = [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode() for p in tree if alive(p)]
    assert len(tree) >= 2 and sum("RibFracSegLogicLib.worker" in c for c in commands) == 2  # launcher + python
    run.cancel()
    assert run.state == CANCELLED
    assert gone_within(tree, seconds=3.0), [p for p in tree if alive(p)]
    assert not run.workdir.exists() and holder.node_ids() == before


def test_worker_environment_starts_from_the_given_environment_and_finds_our_code():
    import RibFracSegLib

    base = {"PATH": "/usr/bin", "PYTHONPATH": os.pathsep.join(["/elsewhere", str(MODULE_DIR)])}
    env = processes.worker_environment(base)
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths == [str(MODULE_DIR), str(Path(RibFracSegLib.__file__).resolve().parent.parent), "/elsewhere"]
    assert paths[1] == str(REPO)
    assert env["PATH"] == "/usr/bin" and env["PYTHONUNBUFFERED"] == "1"
    assert "HOME" in os.environ and "HOME" not in env  # the given environment, not this process's
    assert base["PYTHONPATH"].startswith("/elsewhere")  # the caller's dict is left as it was
    assert processes.slicer_startup_environment() is None  # slicer-core: no Slicer application here


def test_platform_options():
    assert processes.popen_options("posix") == {"start_new_session": True}
    assert processes.taskkill_command(4242) == ["taskkill", "/F", "/T", "/PID", "4242"]
