"""DICOM SR measurement report (TID 1500, highdicom) of a fracture run, and all DICOM outputs of a case.

Per fracture a volumetric measurement group (TID 1411) that references its segment in the
fractures SEG: confidence (probability), volume (mm³), distance along the rib from its head (mm),
the type's probability when a classifier typed it; the finding site is the rib with laterality and
region (posterior/lateral/anterior third), the type a qualitative evaluation, the centroid a
SCOORD3D point in the series' Frame of Reference. With L3, one more group (TID 1501) at the L3
vertebra, referencing the L3 slice: its z position, the muscle and fat areas (cm²) and SMI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from . import defaults
from .detections import Detection, FractureResult, type_probability
from .dicom import SourceSeries, source_series
from .dicom_seg import (coded, finish_dataset, fracture_segmentation, rib_code, rib_segmentation, rib_side,
                        source_names_as_they_are, write_dataset)
from .geometry import superior_axis
from .provenance import TOOL_NAME, ModelInfo

TISSUE_FIELDS = {"muscle": "muscle_cm2", "sat": "sat_cm2", "vat": "vat_cm2", "imat": "imat_cm2"}  # BodyComposition


def _measurement(code, value: float, unit: str, **kwargs):
    from highdicom.sr import Measurement

    return Measurement(coded(code), float(value), coded(defaults.UCUM_UNITS[unit]), **kwargs)


def _point(code, lps, series: SourceSeries):
    """A SCOORD3D point (LPS mm, DICOM's patient coordinates) contained in a measurement group."""
    from highdicom.sr import Scoord3DContentItem

    return Scoord3DContentItem(coded(code), "POINT", np.array([lps], dtype=float), series.frame_of_reference_uid,
                               relationship_type="CONTAINS")


def fracture_group(series: SourceSeries, seg, number: int, d: Detection, model: ModelInfo):
    """TID 1411 for the detection shown by segment `number` of `seg`."""
    import highdicom as hd

    measurements = [_measurement(defaults.SR_CONFIDENCE_CODE, d.confidence, "1"),
                    _measurement(defaults.SR_VOLUME_CODE, d.volume_mm3, "mm3")]
    if d.rib_arc_mm is not None:
        measurements.append(_measurement(defaults.SR_RIB_ARC_CODE, d.rib_arc_mm, "mm"))
    p_type = type_probability(d.label_code, d.code_probabilities)
    if p_type is not None:
        measurements.append(_measurement(defaults.SR_TYPE_PROBABILITY_CODE, p_type, "1"))
    sites = []
    if rib_code(d.rib) is not None:
        region = defaults.RIB_REGION_CODES.get(d.rib_region)
        sites.append(hd.sr.FindingSite(coded(rib_code(d.rib)), laterality=coded(rib_side(d.rib)),
                                       topographical_modifier=None if region is None else coded(region)))
    evaluations = []
    if d.label_code in defaults.FRACTURE_TYPE_MODIFIER_CODES:
        evaluations.append(hd.sr.QualitativeEvaluation(coded(defaults.SR_MORPHOLOGY_CODE),
                                                       coded(defaults.FRACTURE_TYPE_MODIFIER_CODES[d.label_code])))
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=seg.SegmentSequence[number - 1].TrackingUID,
                                                     identifier=f"Fracture {d.id}"),
        referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg, number),
        finding_type=coded(defaults.FRACTURE_TYPE_CODE), finding_category=coded(defaults.FRACTURE_CATEGORY_CODE),
        algorithm_id=hd.sr.AlgorithmIdentification(TOOL_NAME, model.version,
                                                   [f"{k}={v}" for k, v in model.parameters().items()]),
        finding_sites=sites or None, measurements=measurements, qualitative_evaluations=evaluations or None)
    group[0].ContentSequence.append(_point(defaults.SR_CENTRE_CODE, d.center_lps, series))
    return group


def l3_group(series: SourceSeries, image: sitk.Image, l3, body):
    """TID 1501 at the L3 vertebra: slice position, areas, SMI; references the L3 slice's file when the
    series is axial (the slice is one of its files)."""
    import highdicom as hd

    measurements = [_measurement(defaults.SR_SLICE_Z_CODE, l3.center_lps[2], "mm")]
    for tissue, name in TISSUE_FIELDS.items():
        value = getattr(body, name)
        if value is not None:
            measurements.append(_measurement(defaults.SR_AREA_CODE, value, "cm2", finding_sites=[
                hd.sr.FindingSite(coded(defaults.TISSUE_SITE_CODES[tissue]))]))
    if body.smi is not None:
        measurements.append(_measurement(defaults.SR_SMI_CODE, body.smi, "cm2/m2"))
    axial = superior_axis(image)[0] == 0  # the slice index counts the series' files
    sources = [hd.sr.SourceImageForMeasurementGroup.from_source_image(series.datasets[l3.slice_index])] if axial else None
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="L3 body composition"),
        finding_sites=[hd.sr.FindingSite(coded(defaults.L3_VERTEBRA_CODE))], measurements=measurements,
        source_images=sources)
    group[0].ContentSequence.append(_point(defaults.SR_L3_POINT_CODE, l3.center_lps, series))
    return group


def measurement_report(series: SourceSeries, image: sitk.Image, result: FractureResult, seg, model: ModelInfo,
                       l3=None, body=None):
    """The case's Comprehensive 3D SR; `seg` is its fractures SEG (None when there is no fracture)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    groups = [fracture_group(series, seg, n, d, model) for n, d in enumerate(result.detections, start=1)]
    if l3 is not None and body is not None and l3.in_view:
        groups.append(l3_group(series, image, l3, body))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[TOOL_NAME, model.version]), name=TOOL_NAME, manufacturer_name=TOOL_NAME,
        model_name=model.text()[:64])
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
            codes.DCM.Device, device)),
        procedure_reported=coded(defaults.SR_PROCEDURE_CODE), imaging_measurements=groups or None)
    with source_names_as_they_are():
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(series.datasets) + ([seg] if seg is not None else []), content=report[0],
            series_instance_uid=hd.UID(), series_number=defaults.DICOM_SERIES_NUMBERS["sr"],
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer=TOOL_NAME, is_complete=True,
            series_description=f"{TOOL_NAME} measurements")
    finish_dataset(sr)
    return sr


def write_case_dicom(folder: str | Path, image: sitk.Image, result: FractureResult, model: ModelInfo,
                     paths: dict[str, Path], l3=None, body=None) -> dict[str, Optional[Path]]:
    """The DICOM outputs `paths` names (`pipeline.case_outputs`: fractures_seg, sr, and ribs_seg when
    asked) for a CT read from the series folder `folder`. A SEG with nothing to hold (no fracture, no
    rib found) is not written: its kind maps to None. The SR is written last."""
    series = source_series(folder, image)
    written: dict[str, Optional[Path]] = {}
    seg = fracture_segmentation(series, result, model)
    written["fractures_seg"] = None if seg is None else write_dataset(seg, paths["fractures_seg"])
    if "ribs_seg" in paths:
        ribs = None if result.ribs is None else rib_segmentation(series, result.ribs, model)
        written["ribs_seg"] = None if ribs is None else write_dataset(ribs, paths["ribs_seg"])
    written["sr"] = write_dataset(measurement_report(series, image, result, seg, model, l3, body), paths["sr"])
    return written
