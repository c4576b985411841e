"""Turning a training run's best.pt into a checkpoint fit to ship: provenance that travels with it.

A shipped file must say where it came from without pointing at the trainer's disk: absolute data
paths become folder names, and the caller adds what a model card needs (data seeds, intended use).

    python -m RibFracSegLib.training.release RUN/best.pt RibFracSegLib/models/ribfrac_default.pt \
        '{"data": "...", "intended_use": "..."}'
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from ..checkpoint import load_checkpoint, save_checkpoint


def release_checkpoint(src: str | Path, dst: str | Path, notes: Optional[dict] = None) -> Path:
    """Copy a checkpoint with its provenance cleaned (folder names only) and `notes` merged in."""
    ckpt = load_checkpoint(src)
    prov = dict(ckpt.provenance)
    if isinstance(prov.get("data"), list):
        prov["data"] = [Path(p).name for p in prov["data"]]
    prov.update(notes or {})
    ckpt.provenance = prov
    return save_checkpoint(dst, ckpt)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit("usage: python -m RibFracSegLib.training.release SRC DST ['{json notes}']")
    notes = json.loads(sys.argv[3]) if len(sys.argv) == 4 else {}
    print(release_checkpoint(sys.argv[1], sys.argv[2], notes))
