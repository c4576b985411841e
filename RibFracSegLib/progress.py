"""Progress and cancel callbacks: one signature for every long step, and one tqdm adapter.

`progress(done, total)` counts units of work (patches, cases); `cancel() -> bool` is polled
between units. Torch-free, so the Slicer panel and the CLI share the types without loading torch.
On a terminal the CLI draws tqdm bars; elsewhere (a log file, CI, the Slicer console) a bar would
write one redraw per update, so there a step prints a line at a few percent steps and case bars
print nothing but the lines written through them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Optional

from .defaults import PROGRESS_LOG_STEP_PERCENT

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


def on_terminal(stream: Any = None) -> bool:
    """Whether `stream` (default: stderr, where tqdm draws) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def case_bar(iterable: Optional[Iterable] = None, **kwargs: Any):
    """A tqdm bar over cases on a terminal, a silent one elsewhere; `bar.write(line)` prints either way."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not on_terminal(), **kwargs)


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")


def _step_lines(desc: str, unit: str) -> Progress:
    """`progress` printing `desc: 25% (12/48 patches)` each time a PROGRESS_LOG_STEP_PERCENT step is
    passed, with the time taken at 100 %."""
    start, last = time.perf_counter(), [0]

    def progress(done: int, total: int) -> None:
        if total <= 0:
            return
        step = 100 if done >= total else (100 * done // total) // PROGRESS_LOG_STEP_PERCENT * PROGRESS_LOG_STEP_PERCENT
        if step <= last[0]:
            return
        last[0] = step
        took = f" in {time.perf_counter() - start:.0f} s" if step == 100 else ""
        print(f"{desc}: {step}% ({done}/{total} {_plural(unit)}){took}", file=sys.stderr, flush=True)

    return progress


@contextlib.contextmanager
def tqdm_progress(desc: str, unit: str, leave: bool = False) -> Iterator[Progress]:
    """A tqdm bar driven by `progress(done, total)` calls (the total is learnt from the first call) on
    a terminal; elsewhere a line every PROGRESS_LOG_STEP_PERCENT percent."""
    if not on_terminal():
        yield _step_lines(desc, unit)
        return
    from tqdm import tqdm

    with tqdm(desc=desc, unit=unit, leave=leave) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        yield progress
