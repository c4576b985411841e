"""Save result nodes as .seg.nrrd / .mrk.json / .tsv atomically, and load them back.

Slicer's storage nodes write straight to the given name (and a table also writes a .schema.tsv
beside it), so each file is written into a temporary folder next to the target and renamed into
place only after the write succeeded: a cancelled or crashed batch never leaves half a file.
Storage nodes are used directly (no slicer.util.saveNode/loadNode: those need the Qt application).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import slicer

SCHEMA_SUFFIX = ".schema.tsv"


def _write_with_storage(scene, node, storage, final: Path) -> list[Path]:
    """Write `node` with `storage` into a temp folder beside `final`, then rename every file written."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    previous = node.GetStorageNode()
    try:
        scene.AddNode(storage)
        storage.SetFileName(str(tmp_dir / final.name))
        if not storage.WriteData(node):
            raise OSError(f"Slicer could not write {node.GetName()} to {final}.")
        written = sorted(tmp_dir.iterdir(), key=lambda p: p.name == final.name)  # main file renamed last
        moved = []
        for path in written:
            target = final.parent / path.name
            os.replace(path, target)
            moved.append(target)
        return moved
    finally:
        scene.RemoveNode(storage)
        if previous is not None and previous.GetScene() is scene:
            node.SetAndObserveStorageNodeID(previous.GetID())
        shutil.rmtree(tmp_dir, ignore_errors=True)


def save_segmentation(scene, node, path: str | os.PathLike) -> Path:
    """Write a segmentation node as .seg.nrrd (LPS on disk, read back as RAS)."""
    _write_with_storage(scene, node, slicer.vtkMRMLSegmentationStorageNode(), Path(path))
    return Path(path)


def save_markups(scene, node, path: str | os.PathLike) -> Path:
    _write_with_storage(scene, node, slicer.vtkMRMLMarkupsJsonStorageNode(), Path(path))
    return Path(path)


def save_table(scene, node, path: str | os.PathLike) -> Path:
    """Write a table as .tsv (plus its .schema.tsv with column types and units)."""
    _write_with_storage(scene, node, slicer.vtkMRMLTableStorageNode(), Path(path))
    return Path(path)


def _read_with_storage(scene, node_class: str, storage, path: str | os.PathLike, name: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Not found: {path}")
    node = scene.AddNewNodeByClass(node_class, name)
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise OSError(f"Slicer could not read {path} as {node_class}.")
    return node


def load_segmentation(scene, path: str | os.PathLike, name: str = "segmentation"):
    node = _read_with_storage(scene, "vtkMRMLSegmentationNode", slicer.vtkMRMLSegmentationStorageNode(), path, name)
    node.CreateDefaultDisplayNodes()
    return node


def load_markups(scene, path: str | os.PathLike, name: str = "points"):
    node = _read_with_storage(scene, "vtkMRMLMarkupsFiducialNode", slicer.vtkMRMLMarkupsJsonStorageNode(), path, name)
    node.CreateDefaultDisplayNodes()
    return node


def load_table(scene, path: str | os.PathLike, name: str = "table"):
    return _read_with_storage(scene, "vtkMRMLTableNode", slicer.vtkMRMLTableStorageNode(), path, name)
