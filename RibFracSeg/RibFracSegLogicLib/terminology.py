"""Terminology of fracture segments that Slicer's terminology selector resolves (and so can edit).

Slicer's terminology selector finds an entry by its context name and codes among the loaded contexts.
None of Slicer's shipped type contexts holds a fracture, so the module ships a one-type context
(Resources/Terminology/RibFracSeg-SegmentationCategoryTypeModifier.json) and loads it into the
Terminologies module when Slicer starts; the region (Rib, with Left/Right) is from Slicer's own
"Anatomic codes - DICOM master list", which Slicer always loads.
"""

from __future__ import annotations

from pathlib import Path

import slicer
import vtk

from RibFracSegLib import defaults

TERMINOLOGY_FILE = (Path(__file__).resolve().parent.parent / "Resources" / "Terminology"
                    / "RibFracSeg-SegmentationCategoryTypeModifier.json")


def load_terminology(terminologies_logic) -> str:
    """Load our context into Slicer's Terminologies logic unless it is loaded; returns its name."""
    names = vtk.vtkStringArray()
    terminologies_logic.GetLoadedTerminologyNames(names)
    if defaults.TERMINOLOGY_CONTEXT in {names.GetValue(i) for i in range(names.GetNumberOfValues())}:
        return defaults.TERMINOLOGY_CONTEXT
    name = terminologies_logic.LoadTerminologyFromFile(str(TERMINOLOGY_FILE))
    if name != defaults.TERMINOLOGY_CONTEXT:
        raise RuntimeError(f"Could not load the RibFracSeg terminology from {TERMINOLOGY_FILE} (got {name!r}).")
    return name


def rib_side(rib: str) -> str:
    """'L6' / 'unnumbered L' -> 'L', 'R11' -> 'R', 'none' or '' -> '' (side unknown)."""
    text = (rib or "").strip()
    if text.startswith("unnumbered "):
        text = text[len("unnumbered "):]
    return text[:1] if text[:1] in defaults.SIDE_CODES else ""


def _set_code(obj, code: tuple[str, str, str]) -> None:
    scheme, value, meaning = code
    obj.SetCodingSchemeDesignator(scheme)
    obj.SetCodeValue(value)
    obj.SetCodeMeaning(meaning)


def _entry(category, type_, type_modifier=None, region=None, region_modifier=None):
    """A vtkSlicerTerminologyEntry in our context; the region (when given) from Slicer's DICOM master list."""
    entry = slicer.vtkSlicerTerminologyEntry()
    entry.SetTerminologyContextName(defaults.TERMINOLOGY_CONTEXT)
    _set_code(entry.GetCategoryObject(), category)
    _set_code(entry.GetTypeObject(), type_)
    if type_modifier is not None:
        _set_code(entry.GetTypeModifierObject(), type_modifier)
    if region is not None:
        # Slicer >= 5.7 says Region, older versions AnatomicRegion / AnatomicContext.
        set_context = getattr(entry, "SetRegionContextName", None) or entry.SetAnatomicContextName
        set_context(defaults.REGION_CONTEXT)
        _set_code((getattr(entry, "GetRegionObject", None) or entry.GetAnatomicRegionObject)(), region)
    if region_modifier is not None:
        getter = getattr(entry, "GetRegionModifierObject", None) or entry.GetAnatomicRegionModifierObject
        _set_code(getter(), region_modifier)
    return entry


def fracture_entry(side: str = "", code: int = -1):
    """A rib fracture, with its RibFrac type (type modifier) and the rib's side (region modifier) when known."""
    return _entry(defaults.FRACTURE_CATEGORY_CODE, defaults.FRACTURE_TYPE_CODE,
                  type_modifier=defaults.FRACTURE_TYPE_MODIFIER_CODES.get(int(code)),
                  region=defaults.FRACTURE_REGION_CODE, region_modifier=defaults.SIDE_CODES.get(side))


def rib_entry(side: str, number: int | None):
    """A rib: 'Sixth rib' (or 'Rib' when unnumbered) with its side as the type modifier."""
    return _entry(defaults.RIB_CATEGORY_CODE, defaults.RIB_TYPE_CODES[number], type_modifier=defaults.SIDE_CODES[side])


def serialise(entry) -> str:
    """The text a segment stores in its terminology tag."""
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry)


def fracture_terminology(side: str = "", code: int = -1) -> str:
    return serialise(fracture_entry(side, code))
