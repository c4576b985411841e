"""The "Ribs" option: a '<CT> ribs' segmentation, one named segment per rib the rib step found.

Segments are named 'Left rib 6' / 'Right rib 11' / 'Left ribs, unnumbered', carry the rib's anatomic
terminology (First..Twelfth rib or Rib, with Left/Right as type modifier; our shipped context holds
them so the selector resolves them) and the label value of our rib files as a tag. The segmentation
is hidden in 3D by default: 24 ribs would hide the fractures; Show 3D brings them in.
"""

from __future__ import annotations

import slicer

from RibFracSegLib import defaults
from RibFracSegLib.detections import rib_segment_name
from RibFracSegLib.geometry import ijk_to_ras_matrix

from .segments import TAG_PREFIX, add_label_segment, new_segmentation_node
from .terminology import rib_entry, serialise


def add_rib_segmentation(scene, volume, ribs, name: str):
    """One segment per rib label of a RibLabels (label image on the input grid), hidden in 3D."""
    import SimpleITK as sitk
    from scipy import ndimage

    from RibFracSegLib.ribs.labels import rib_from_label_value

    seg_node = new_segmentation_node(scene, volume, name)
    labels = sitk.GetArrayViewFromImage(ribs.labels)
    image_to_world = slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix(ribs.labels))
    for value, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:  # label value not present (a rib not found)
            continue
        side, number = rib_from_label_value(value)
        segment = add_label_segment(seg_node, labels, box, value, image_to_world, rib_segment_name(side, number),
                                    defaults.RIB_SEGMENT_COLOR, serialise(rib_entry(side, number)))
        segment.SetTag(TAG_PREFIX + "label", str(value))
    seg_node.GetDisplayNode().SetVisibility3D(False)
    return seg_node
