"""The module's Logic refuses bad volume nodes as the reader refuses bad files, before any work, and
adds nothing to the scene (a node loaded by Slicer never went through `read_ct`)."""

from __future__ import annotations

import numpy as np
import pytest

import bad_input_files as B
from slicer_scene import import_module_file, make_scene

from RibFracSegLib.shipped import shipped_model

module = import_module_file()

from RibFracSegLogicLib.volumes import volume_node_from_image  # noqa: E402

CT = B.ct_array()


def _nan(array: np.ndarray) -> np.ndarray:
    out = array.astype(np.float32)
    out[2, 3, 4] = np.nan
    return out


@pytest.mark.parametrize("array, says", [
    (_nan(CT), "1 NaN/Inf voxels"),
    ((CT + 1024).astype(np.uint16), "rescale intercept"),
    (CT[:4, :10, :10], "too small to hold a rib"),
], ids=["NaN", "missing rescale", "tiny"])
def test_logic_refuses_bad_volume_nodes_and_adds_nothing(array, says):
    holder = make_scene()
    volume = volume_node_from_image(holder.scene, B.image(array), "scan")
    before = holder.node_ids()
    logic = module.RibFracSegLogic(scene=holder.scene)
    with pytest.raises(ValueError, match=f"Volume 'scan'.*{says}"):
        logic.process(volume, checkpoint=str(shipped_model("fracture")), device="cpu")
    assert holder.node_ids() == before
