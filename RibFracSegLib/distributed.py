"""Running cases on Dask: a local cluster sized to this machine, or an existing cluster by address.

Each case is one task; a worker process runs one case at a time (threads_per_worker=1) and torch
inside it gets its share of the cores, so N workers never oversubscribe the machine. GPU workers
that declare a `GPU` resource (`dask worker --resources GPU=1`, dask-jobqueue's
`worker_extra_args`) get one case at a time per GPU. Only this module imports dask.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

from .cases import case_id
from .options import SegmentOptions, worker_threads
from .pipeline import FAILED, CaseReport


def _require_dask():
    try:
        from dask import distributed
    except ImportError:
        raise RuntimeError("--workers/--scheduler need Dask: pip install 'ribfracseg[dask]' "
                           "(or run without them: cases then run one after another)") from None
    return distributed


def _client(distributed, workers: int, scheduler: Optional[str], gpu: bool):
    if scheduler:
        return distributed.Client(scheduler), None
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, resources={"GPU": 1} if gpu else None)
    return distributed.Client(cluster), cluster


def run_on_dask(task: Callable[..., dict], paths: list[str], out: str, options: SegmentOptions, *,
                workers: int = 0, scheduler: Optional[str] = None) -> Iterator[CaseReport]:
    """Yield a CaseReport per path as cases finish (in completion order)."""
    distributed = _require_dask()
    if not paths:
        return
    gpu = options.device == "cuda"
    if options.threads is None and not scheduler:
        options = SegmentOptions.from_dict({**options.to_dict(), "threads": worker_threads(workers)})
    client, cluster = _client(distributed, workers, scheduler, gpu)
    try:
        declared = any(w.get("resources", {}).get("GPU") for w in client.scheduler_info()["workers"].values())
        extra = {"resources": {"GPU": 1}} if declared and options.device != "cpu" else {}
        futures = {client.submit(task, path, out, options.to_dict(), key=f"segment-{n}-{path}", pure=False,
                                 **extra): path for n, path in enumerate(paths)}
        for future in distributed.as_completed(futures):
            try:
                yield CaseReport.from_dict(future.result())
            except Exception as err:  # a worker died or the task broke: report it, keep the rest going
                yield CaseReport(case_id(futures[future]), futures[future], FAILED,
                                 error=f"{type(err).__name__}: {err}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
