"""Scalar volume node <-> SimpleITK image, keeping the geometry exact.

Slicer stores a volume as voxels plus one IJK -> RAS matrix; the library wants a SimpleITK image in
LPS. Converting through RibFracSegLib.geometry keeps the LPS/RAS flip and the [k, j, i] axis order
in one place.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from RibFracSegLib.geometry import LPS_TO_RAS, lps_to_ras, set_ras_geometry


def image_from_volume_node(node) -> sitk.Image:
    """A copy of a scalar volume node as a SimpleITK image (LPS geometry, same voxel type).

    The node's own geometry is used (a parent transform is not applied): result nodes are placed
    under the same transform, so they line up with the volume wherever it is moved.
    """
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise ValueError("Select a CT volume (a scalar volume node) as input.")
    if node.GetImageData() is None:
        raise ValueError(f"Volume '{node.GetName()}' has no voxels; load the CT again.")
    array = slicer.util.arrayFromVolume(node)  # a view [k, j, i]; GetImageFromArray copies it
    if array.ndim != 3 or min(array.shape) < 2:
        raise ValueError(f"Volume '{node.GetName()}' has shape {array.shape}; a CT volume must be 3-D.")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    directions = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(directions)
    return set_ras_geometry(image, node.GetOrigin(), spacing_as_written(node.GetSpacing()),
                            slicer.util.arrayFromVTKMatrix(directions)[:3, :3])


def spacing_as_written(spacing) -> tuple[float, ...]:
    """The spacing the file holds. Slicer's readers derive a node's spacing from its IJK->RAS matrix
    (column norms), which adds a unit in the last place: 5 mm slices come back as 5.000000000000001 mm
    and the rib step's 5 mm limit then refused them, so the L3 count lost its ribs in Slicer but not on
    the command line (CRLM-CT-1004). A value within a few units in the last place of a number with at most
    10 decimals (0.9765625 = 1000/1024) is that number; anything else (a float32 0.699999988 from a NIfTI
    header) is kept as it is."""
    out = []
    for value in map(float, spacing):
        near = (round(value, d) for d in range(11))
        out.append(next((s for s in near if abs(value - s) <= 4 * np.spacing(abs(s))), value))
    return tuple(out)


def volume_node_from_image(scene, image: sitk.Image, name: str, node=None):
    """Add (or fill `node`) a scalar volume node holding `image` with its geometry."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    directions = np.eye(4)
    directions[:3, :3] = LPS_TO_RAS @ np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    node.SetIJKToRASDirectionMatrix(slicer.util.vtkMatrixFromArray(directions))
    node.SetSpacing(image.GetSpacing())  # set apart from the directions so spacing stays bit-exact
    node.SetOrigin(lps_to_ras(image.GetOrigin()))
    node.CreateDefaultDisplayNodes()
    return node


def volume_node_from_file(scene, path: str, name: str):
    """Read a CT with the library's reader (files and DICOM folders, clear errors) into a new node."""
    from RibFracSegLib.io import read_ct

    return volume_node_from_image(scene, read_ct(path), name)
