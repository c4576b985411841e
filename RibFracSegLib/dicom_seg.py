"""DICOM SEG of a fracture run (highdicom): what a PACS, OHIF or XNAT shows beside the source series.

`<case>-fractures.seg.dcm` holds one segment per fracture, labelled as the Slicer segments are
('Fracture 3 - right rib 6, lateral'), coded Morphologically Altered Structure / Fracture of rib
(with the RibFrac type as a type modifier when one was given) in the rib with its laterality;
`<case>-ribs.seg.dcm` one segment per rib label (First..Twelfth rib, Left/Right). Both reference
the source series (its Frame of Reference and every SOP instance a frame was derived from) and
name RibFracSeg, its version and checkpoint as the algorithm. A segment's frames are the source
slices in `dicom.SourceSeries` order, which is the CT image's slice order, so each frame equals
the NIfTI output's slice on the source grid.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from . import defaults
from .detections import Detection, FractureResult, fracture_segment_name, rib_segment_name
from .dicom import SourceSeries
from .io import atomic_path
from .provenance import TOOL_NAME, ModelInfo

Code = tuple[str, str, str]  # (scheme, value, meaning), as in defaults


def coded(code: Code):
    """A defaults code tuple as highdicom's CodedConcept."""
    from highdicom.sr import CodedConcept

    scheme, value, meaning = code
    return CodedConcept(value, scheme, meaning)


def _coded_item(code: Code):
    """The same code as a plain sequence item (for the modifier sequences highdicom has no argument for)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator, item.CodeValue, item.CodeMeaning = code
    return item


def finish_dataset(ds) -> None:
    """What highdicom leaves to us: name our local coding scheme in the file (Coding Scheme Identification), as
    DICOM asks of local codes, and drop a Referenced Study Sequence copied from the source whose items lack
    their SOP Class (de-identified series often carry one; a validator then rejects our file for it)."""
    item = _coded_item((defaults.LOCAL_SCHEME[0], "", ""))
    del item.CodeValue, item.CodeMeaning
    item.CodingSchemeName = defaults.LOCAL_SCHEME[1]
    item.CodingSchemeResponsibleOrganization = TOOL_NAME
    ds.CodingSchemeIdentificationSequence = [item]
    if any("ReferencedSOPClassUID" not in i for i in ds.get("ReferencedStudySequence", [])):
        del ds.ReferencedStudySequence


@contextlib.contextmanager
def source_names_as_they_are() -> Iterator[None]:
    """highdicom warns when a copied patient name has one component ('Lung_Dx-A0001', common after
    de-identification); it is the source's name, copied unchanged, so the warning is not the reader's business."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name", category=UserWarning)
        yield


def rib_code(rib: str) -> Optional[Code]:
    """The SNOMED CT code of a detection's rib ('L6' -> Sixth rib; 'unnumbered R' -> Rib), None for 'none'."""
    if rib == "none":
        return None
    return defaults.RIB_TYPE_CODES[None if rib.startswith("unnumbered") else int(rib[1:])]


def rib_side(rib: str) -> Optional[Code]:
    """The laterality code of a detection's rib (patient's left/right), None for 'none'."""
    return None if rib == "none" else defaults.SIDE_CODES[rib[-1] if rib.startswith("unnumbered") else rib[0]]


def _segmentation(series: SourceSeries, frames: np.ndarray, descriptions: list, model: ModelInfo, kind: str,
                  description: str):
    import highdicom as hd

    with source_names_as_they_are():
        seg = hd.seg.Segmentation(
            source_images=list(series.datasets), pixel_array=frames, segmentation_type="BINARY",
            segment_descriptions=descriptions, series_instance_uid=hd.UID(),
            series_number=defaults.DICOM_SERIES_NUMBERS[kind], sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer=TOOL_NAME, manufacturer_model_name=f"{TOOL_NAME} {model.checkpoint}"[:64],
            software_versions=model.version, device_serial_number="none", content_label=kind.split("_")[0].upper(),
            content_description=f"{TOOL_NAME}: {description}", series_description=f"{TOOL_NAME} {description}")
    finish_dataset(seg)
    return seg


def _algorithm(model: ModelInfo):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(name=TOOL_NAME, family=codes.cid7162.ArtificialIntelligence,
                                              version=model.version, parameters=model.parameters())


def _frames(series: SourceSeries, labels: sitk.Image, lut: np.ndarray) -> np.ndarray:
    """Segment numbers per voxel, one frame per source file: the label image's slices k (its grid is the
    series' by construction of `SourceSeries`)."""
    values = sitk.GetArrayViewFromImage(labels)
    if values.shape[0] != len(series.datasets):
        raise ValueError(f"label image has {values.shape[0]} slices, the series {len(series.datasets)}")
    return lut[values]


def fracture_segmentation(series: SourceSeries, result: FractureResult, model: ModelInfo):
    """One segment per detection (segment n = the n-th detection, label 'Fracture <id> - ...'); None
    when there is no detection (a SEG needs a segment)."""
    import highdicom as hd

    detections: Sequence[Detection] = result.detections
    if not detections:
        return None
    lut = np.zeros(max(int(np.max(sitk.GetArrayViewFromImage(result.instances))), max(d.id for d in detections)) + 1,
                   dtype=np.uint16)
    algorithm, descriptions = _algorithm(model), []
    for number, d in enumerate(detections, start=1):
        lut[d.id] = number
        region = rib_code(d.rib)
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=fracture_segment_name(d)[:64],
            segmented_property_category=coded(defaults.FRACTURE_CATEGORY_CODE),
            segmented_property_type=coded(defaults.FRACTURE_TYPE_CODE), algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm, tracking_uid=hd.UID(), tracking_id=f"Fracture {d.id}",
            anatomic_regions=None if region is None else [coded(region)])
        if region is not None:
            description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [_coded_item(rib_side(d.rib))]
        if d.label_code in defaults.FRACTURE_TYPE_MODIFIER_CODES:
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                _coded_item(defaults.FRACTURE_TYPE_MODIFIER_CODES[d.label_code])]
        descriptions.append(description)
    return _segmentation(series, _frames(series, result.instances, lut), descriptions, model, "fractures_seg",
                         "rib fractures")


def rib_segmentation(series: SourceSeries, ribs, model: ModelInfo):
    """One segment per rib label present in a `RibLabels` ('Left rib 6' coded Sixth rib + Left); None
    when no rib was found."""
    import highdicom as hd

    from .ribs.labels import rib_from_label_value

    values = sitk.GetArrayViewFromImage(ribs.labels)
    present = [int(v) for v in np.unique(values) if v > 0]
    if not present:
        return None
    lut = np.zeros(max(present) + 1, dtype=np.uint8)
    algorithm, descriptions = _algorithm(model), []
    colour = hd.color.CIELabColor.from_rgb(*(int(round(255 * c)) for c in defaults.RIB_SEGMENT_COLOR))
    for number, value in enumerate(present, start=1):
        lut[value] = number
        side, rib_number = rib_from_label_value(value)
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=rib_segment_name(side, rib_number),
            segmented_property_category=coded(defaults.RIB_CATEGORY_CODE),
            segmented_property_type=coded(defaults.RIB_TYPE_CODES[rib_number]), algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm, tracking_uid=hd.UID(), tracking_id=f"Rib label {value}",
            display_color=colour)
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _coded_item(defaults.SIDE_CODES[side])]
        descriptions.append(description)
    return _segmentation(series, _frames(series, ribs.labels, lut), descriptions, model, "ribs_seg", "ribs")


def write_dataset(ds, path: str | Path) -> Path:
    """A DICOM object to `path` atomically (Part 10 file, as PACS import tools expect)."""
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)
