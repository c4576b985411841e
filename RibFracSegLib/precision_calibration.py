"""`calibrate_precision`: segment CTs in fp32 and in each faster precision, keep the fastest that gives
the same fractures. Apart from precision.py (the rules and the verdict), because it runs the whole
fracture pipeline, which itself asks precision.py what `auto` may try: one module each way, no circle."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import SimpleITK as sitk

from .checkpoint import Checkpoint
from .errors import InputError
from . import precision
from .precision import PrecisionCalibration, Sameness, compare_results


def calibrate_precision(checkpoint: Checkpoint, cases: Sequence[tuple[str, sitk.Image | Path]], *,
                        device: str = "cpu", candidates: Optional[Sequence[str]] = None,
                        log: Callable[[str], None] = print) -> PrecisionCalibration:
    """Segment each CT (an image, or a path read when its turn comes: one CT in memory at a time) in
    fp32 and in every candidate precision still standing; the first (fastest) candidate that gives the
    same fractures on every CT wins, else fp32. Default candidates: those the device runs natively."""
    from .inference import resolve_device, segment_ct
    from .io import read_ct

    dev = resolve_device(device)
    if candidates is None:  # emulated precisions would be slow here and never chosen by `auto`
        native = precision.native_reduced_precision(dev)
        if native is None:
            raise InputError(f"this {dev.type} has no native reduced precision, so `auto` runs fp32 here: nothing "
                             "to calibrate. Calibrate on a machine that has it, or name --candidates (slow: emulated).")
        candidates = [native, "mixed"]
    standing = list(candidates)
    compared: dict[str, list[Sameness]] = {c: [] for c in standing}
    for name, source in cases:
        if not standing:
            break  # every candidate has already changed some CT's fractures
        image = source if isinstance(source, sitk.Image) else read_ct(source)
        reference = segment_ct(image, checkpoint, device=str(dev), precision="fp32", return_probability=True)
        log(f"  {name}: fp32 {len(reference.detections)} detections, network {reference.timings_s['network']:.1f} s")
        for candidate in list(standing):
            other = segment_ct(image, checkpoint, device=str(dev), precision=candidate, return_probability=True,
                               ribs=reference.ribs, find_ribs=False)  # the ribs do not depend on the precision
            c = compare_results(name, candidate, reference, other)
            compared[candidate].append(c)
            log(f"  {name}: {candidate} {c.count_other} vs {c.count_fp32} detections, {c.matched} matched, "
                f"min IoU {c.min_iou:.3f}, max confidence diff {c.max_confidence_diff:.4f}, max probability "
                f"diff {c.max_probability_diff:.3f}, network {c.seconds_other:.1f} s vs {c.seconds_fp32:.1f} s")
            if not c.same:
                standing.remove(candidate)
    if standing:
        return PrecisionCalibration(dev.type, standing[0], compared[standing[0]])
    return PrecisionCalibration(dev.type, "fp32", [c for cs in compared.values() for c in cs])
