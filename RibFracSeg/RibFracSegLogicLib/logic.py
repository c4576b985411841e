"""The module's Logic without the GUI: volume node in, result nodes and detections out.

`RibFracSeg.RibFracSegLogic` (the module file) is this class plus Slicer's ScriptedLoadableModuleLogic
base; keeping the behaviour here lets pytest drive it with the slicer-core wheel. The Logic takes
its scene as a parameter, never opens a dialog, and adds nodes to the scene only on success.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import slicer

from RibFracSegLib.detections import Detection
from RibFracSegLib.errors import Cancelled
from RibFracSegLib.progress import Cancel, Progress

from .compute import RunOptions, RunOutput, compute
from .dependencies import check_requirements
from .nodes import RunNodes, add_run_nodes
from .runner import BackgroundRun
from .volumes import image_from_volume_node

logger = logging.getLogger("RibFracSeg")


@dataclass
class ProcessResult:
    """What one run added to the scene, and what it found."""

    nodes: RunNodes
    detections: list[Detection]
    output: RunOutput
    options: Optional[RunOptions] = None  # what the run was asked for (its checkpoint names the model in reports)


def checked_image(volumeNode):
    """The node's voxels as an image, refused (InputError, a ValueError) as a file would be: not HU, NaN, too small."""
    from RibFracSegLib.ct_checks import check_image

    from .unfolded import is_unfolded_picture

    if is_unfolded_picture(volumeNode):
        raise ValueError(f"Volume '{volumeNode.GetName()}' is the rib-unfolded picture of a run, not a CT: "
                         "choose the CT it was made from.")
    image = image_from_volume_node(volumeNode)
    check_image(image, f"Volume '{volumeNode.GetName()}'")
    return image


class RibFracSegLogicBase:
    """Fracture detection (and optionally L3 + body composition) for a CT volume node."""

    def __init__(self, scene=None) -> None:
        self._scene = scene

    @property
    def scene(self):
        """The scene given at construction, else Slicer's main scene."""
        if self._scene is not None:
            return self._scene
        scene = getattr(slicer, "mrmlScene", None)
        if scene is None:
            raise RuntimeError("No MRML scene: pass one, RibFracSegLogic(scene=...), outside Slicer.")
        return scene

    @staticmethod
    def options(checkpoint: Optional[str] = None, device: str = "auto", overlap: Optional[float] = None,
                threshold: Optional[float] = None, l3: bool = False, height_m: Optional[float] = None,
                l3_checkpoint: Optional[str] = None, ribs: bool = False) -> RunOptions:
        """Validated run options (ValueError names the bad one); None checkpoint = the shipped model."""
        kwargs = {} if checkpoint is None else {"checkpoint": str(checkpoint)}
        return RunOptions(device=device, overlap=overlap, threshold=threshold, l3=l3, height_m=height_m,
                          l3_checkpoint=None if l3_checkpoint is None else str(l3_checkpoint), ribs=bool(ribs),
                          **kwargs).validate()

    def process(self, volumeNode, checkpoint: Optional[str] = None, device: str = "auto",
                overlap: Optional[float] = None, threshold: Optional[float] = None, l3: bool = False,
                height_m: Optional[float] = None, progress: Optional[Progress] = None,
                cancel: Optional[Cancel] = None, l3_checkpoint: Optional[str] = None,
                name: Optional[str] = None, ribs: bool = False) -> ProcessResult:
        """Segment rib fractures in `volumeNode` in this process (console and batch use).

        progress(done, total) receives the patches done; cancel() -> True stops the run between
        batches with the library's Cancelled exception and leaves the scene untouched. ribs=True adds
        the '<CT> ribs' segmentation (one segment per rib found, hidden in 3D).
        Raises ValueError on bad input or options, MissingRequirements naming any package not installed.
        """
        check_requirements()
        options = self.options(checkpoint, device, overlap, threshold, l3, height_m, l3_checkpoint, ribs)
        start = time.perf_counter()
        image = checked_image(volumeNode)
        logger.info("RibFracSeg: input copied in %.2f s", time.perf_counter() - start)
        output = compute(image, options, progress=progress, cancel=cancel)
        if cancel is not None and cancel():
            raise Cancelled()
        return self.add_results(volumeNode, output, options, name=name)

    def add_results(self, volumeNode, output: RunOutput, options: RunOptions,
                    name: Optional[str] = None) -> ProcessResult:
        """Turn a finished run into scene nodes (all or none), logging how long it took."""
        start = time.perf_counter()
        nodes = add_run_nodes(self.scene, volumeNode, output, height_m=options.height_m, name=name, ribs=options.ribs)
        logger.info("RibFracSeg: %d fractures added to the scene in %.2f s",
                    len(output.fractures.detections), time.perf_counter() - start)
        return ProcessResult(nodes=nodes, detections=list(output.fractures.detections), output=output, options=options)

    def start_background(self, volumeNode, options: RunOptions, preload: Sequence[str] = ()) -> BackgroundRun:
        """Start a run in a PythonSlicer subprocess; poll it, then call finish_background."""
        check_requirements()
        return BackgroundRun(checked_image(volumeNode), options, preload=preload)

    def finish_background(self, volumeNode, run: BackgroundRun, name: Optional[str] = None) -> ProcessResult:
        """Add a finished background run's results to the scene (raises if it failed or was cancelled)."""
        return self.add_results(volumeNode, run.output(), run.options, name=name)

    def save_report(self, volumeNode, result: ProcessResult, path, name: Optional[str] = None):
        """The run's one-page HTML report (RibFracSegLib.case_report: pictures, fracture and body-composition
        tables, run details) written to `path`; returns the path."""
        from RibFracSegLib.case_report import write_case_report

        storage = volumeNode.GetStorageNode()
        return write_case_report(path, image_from_volume_node(volumeNode), result.output.fractures,
                                 name or volumeNode.GetName(), model=model_info(result.options),
                                 source=storage.GetFileName() if storage is not None else volumeNode.GetName(),
                                 l3=result.output.l3, body=result.output.body)


def model_info(options: Optional[RunOptions]):
    """The provenance of a run's results (checkpoint file, network, RibFracSeg version)."""
    from RibFracSegLib.checkpoint import load_checkpoint
    from RibFracSegLib.provenance import ModelInfo

    checkpoint = (options or RunOptions()).checkpoint
    return ModelInfo.of(load_checkpoint(checkpoint), checkpoint)
