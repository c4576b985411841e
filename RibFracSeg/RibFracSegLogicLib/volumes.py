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

from RibFracSegLib.geometry import ijk_to_ras_matrix, set_ijk_to_ras_matrix


def ijk_to_ras(node) -> np.ndarray:
    """The node's own 4x4 IJK -> RAS matrix (its parent transform is not applied)."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def image_from_volume_node(node) -> sitk.Image:
    """A copy of a scalar volume node as a SimpleITK image (LPS geometry, same voxel type)."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise ValueError("Select a CT volume (a scalar volume node) as input.")
    if node.GetImageData() is None:
        raise ValueError(f"Volume '{node.GetName()}' has no voxels; load the CT again.")
    array = slicer.util.arrayFromVolume(node)  # a view [k, j, i]; GetImageFromArray copies it
    if array.ndim != 3 or min(array.shape) < 2:
        raise ValueError(f"Volume '{node.GetName()}' has shape {array.shape}; a CT volume must be 3-D.")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    return set_ijk_to_ras_matrix(image, ijk_to_ras(node))


def volume_node_from_image(scene, image: sitk.Image, name: str, node=None):
    """Add (or fill `node`) a scalar volume node holding `image` with its geometry."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix(image)))
    node.CreateDefaultDisplayNodes()
    return node


def volume_node_from_file(scene, path: str, name: str):
    """Read a CT with the library's reader (files and DICOM folders, clear errors) into a new node."""
    from RibFracSegLib.io import read_ct

    return volume_node_from_image(scene, read_ct(path), name)
