"""Progress and cancel callbacks: one signature for every long step, and one tqdm adapter.

`progress(done, total)` counts units of work (patches, cases); `cancel() -> bool` is polled
between units. Torch-free, so the Slicer panel and the CLI share the types without loading torch.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


@contextlib.contextmanager
def tqdm_progress(desc: str, unit: str, leave: bool = False) -> Iterator[Progress]:
    """A tqdm bar driven by `progress(done, total)` calls (the total is learnt from the first call)."""
    from tqdm import tqdm

    with tqdm(desc=desc, unit=unit, leave=leave) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        yield progress
