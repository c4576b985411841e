"""The L3 run's nodes of one CT: the vertebral labels, and a rerun that replaces the last run's L3 nodes.

The vertebral count (spine.vertebral_levels, as its plain `SpineLevels.to_dict()` summary so the same
data comes from this process and from the worker) becomes one locked point list '<CT> vertebrae': a
point per *named* body at its centre, labelled with its name, top to bottom. Unnamed bodies are left
out: a label is a claim a reader may copy into a report, and '?' points along the upper column would
be noise in every slice view; where the names stop is itself the message (the node's description says
how many bodies were found unnamed, and what anchored the count).

The L3 nodes of a CT (its L3 point, body-composition table, L3 tissues and vertebrae) are one answer:
each is marked with its role and a reference to the CT, and a new L3 run of that CT removes the
previous run's set once its own is complete, so a rerun never leaves two 'L3' points or two
'<CT> vertebrae' lists behind.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import vtk

from RibFracSegLib import defaults

ROLE_ATTRIBUTE = "RibFracSeg.Output"  # which result a node is (an L3_ROLES value)
INPUT_REFERENCE = "RibFracSegInput"  # node reference role: the CT the node was computed from
L3_ROLES = ("L3 point", "body composition", "L3 tissues", "vertebrae")  # one L3 answer of a CT
ANCHOR_ATTRIBUTE = "RibFracSeg.CountAnchor"  # on '<CT> vertebrae': what named the column ("rib 12", "sacrum")


def named_vertebrae(levels: Optional[dict]) -> list[dict]:
    """The count's named bodies, top to bottom (the order a reader scrolls the column in)."""
    if not levels:
        return []
    return sorted((v for v in levels["vertebrae"] if v["name"]), key=lambda v: -v["centre_ras"][2])


def count_description(levels: dict, l3_review: str = "") -> str:
    """How the count named the column: its anchor, what it said, what was left out, and why L3 wants a look
    (the L3 check's reason, e.g. when the network's L3 stands against the count's)."""
    unnamed = sum(1 for v in levels["vertebrae"] if not v["name"])
    parts = [f"Vertebral bodies named by counting from {levels['anchor']}"]
    if levels.get("lumbar_count") is not None:
        parts.append(f"{levels['lumbar_count']} lumbar bodies between T12 and the sacrum")
    parts += list(levels.get("notes", []))
    if unnamed:
        parts.append(f"{unnamed} {'body' if unnamed == 1 else 'bodies'} found but not named (no anchor reaches "
                     "them): not shown")
    if l3_review:
        parts.append(f"L3 check: review, {l3_review}")
    return "; ".join(parts) + "."


def add_vertebra_points(scene, levels: Optional[dict], name: str, l3_review: str = ""):
    """'<name> vertebrae': a locked point per named body at its centre (RAS), or None when the count named
    none. Each point's description gives the body's extent along the column (disc to disc)."""
    bodies = named_vertebrae(levels)
    if not bodies:
        return None
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} vertebrae")
    points.CreateDefaultDisplayNodes()
    for v in bodies:
        index = points.AddControlPoint(vtk.vtkVector3d(*v["centre_ras"]), v["name"])
        ends = "disc to disc" if v["complete"] else "cut by the CT's edge"
        extent = f"S {v['z_bottom_mm']:.1f} to {v['z_top_mm']:.1f} mm ({ends})"
        points.SetNthControlPointDescription(index, f"{v['name']} vertebral body centre; body {extent}")
        points.SetNthControlPointLocked(index, True)
    points.SetDescription(count_description(levels, l3_review))
    points.SetAttribute(ANCHOR_ATTRIBUTE, str(levels["anchor"]))
    points.SetLocked(True)  # like the fracture and L3 points: a stray drag cannot move a result
    display = points.GetDisplayNode()
    display.SetSelectedColor(*defaults.VERTEBRA_LABEL_COLOR)
    display.SetColor(*defaults.VERTEBRA_LABEL_COLOR)
    display.SetPropertiesLabelVisibility(False)  # the node's name by the top point would read as a vertebra's
    return points


def mark_l3_nodes(volume, nodes: dict[str, Any]) -> None:
    """Tag each node (role -> node; None skipped) as part of this CT's L3 answer."""
    for role, node in nodes.items():
        if node is not None:
            node.SetAttribute(ROLE_ATTRIBUTE, role)
            node.SetNodeReferenceID(INPUT_REFERENCE, volume.GetID())


def l3_nodes_of(scene, volume) -> list:
    """Every node marked as part of an L3 answer for this CT."""
    found = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        if node.GetAttribute(ROLE_ATTRIBUTE) in L3_ROLES and node.GetNodeReferenceID(INPUT_REFERENCE) == volume.GetID():
            found.append(node)
    return found


def remove_with_display(scene, node) -> None:
    """Remove a node with its display and storage nodes (Slicer's Data module does this in the application;
    a bare scene does not)."""
    owned = [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())] if hasattr(
        node, "GetNumberOfDisplayNodes") else []
    owned.append(node.GetStorageNode() if hasattr(node, "GetStorageNode") else None)
    for other in owned:
        if other is not None and other.GetScene() is scene:
            scene.RemoveNode(other)
    scene.RemoveNode(node)


def replace_l3_nodes(scene, volume, keep: Iterable) -> int:
    """Remove this CT's earlier L3 nodes (all but `keep`); returns how many were removed."""
    keep_ids = {n.GetID() for n in keep if n is not None}
    old = [n for n in l3_nodes_of(scene, volume) if n.GetID() not in keep_ids]
    for node in old:
        remove_with_display(scene, node)
    return len(old)
