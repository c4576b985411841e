"""An oblique CT's MIPs are made on patient axes: the spine stays one column from head to foot, and a
MIP row still maps to the right height (l3/projections.patient_aligned)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from RibFracSegLib.l3.decoding import point_to_row, row_to_point
from RibFracSegLib.l3.projections import compute_projections
from RibFracSegLib.orientation import canonical_image


def _patient() -> sitk.Image:
    """A body on patient axes, 1.5 mm voxels: a vertical bone rod (the spine) and a bone disk at z -100."""
    arr = np.full((160, 140, 140), -1000, np.int16)  # [k, j, i], z from -240 to 0 mm
    arr[:, 25:115, 20:120] = 40
    arr[:, 80:88, 66:74] = 700
    arr[93:96, 60:100, 50:90] = 1300  # z = -240 + 94 * 1.5 = -99 mm
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((1.5, 1.5, 1.5))
    image.SetOrigin((-105.0, -105.0, -240.0))
    return image


def _oblique(patient: sitk.Image, degrees=(10.0, -8.0, 6.0)) -> sitk.Image:
    """The same body stored on a grid tilted by `degrees` about the three axes (as a tilted scan)."""
    rotation = sitk.Euler3DTransform((0, 0, 0), *np.radians(degrees))
    direction = np.array(rotation.GetMatrix()).reshape(3, 3)
    centre = np.array(patient.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in patient.GetSize()]))
    size = [150, 150, 180]
    spacing = np.array([1.5, 1.5, 1.5])
    origin = centre - direction @ (spacing * (np.array(size) - 1) / 2)
    return sitk.Resample(patient, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), spacing.tolist(),
                         direction.ravel().tolist(), -1000.0, sitk.sitkInt16)


def _rod_columns(frontal: np.ndarray) -> np.ndarray:
    """Column of the rod (700 HU: 0.43 in the MIP scale) on each row away from the box's ends and the disk."""
    rows = frontal[20:-20]
    peak = rows.max(axis=1)
    return np.argmax(rows, axis=1)[(peak > 0.3) & (peak < 0.6)]


def test_oblique_ct_is_projected_on_patient_axes():
    patient, oblique = _patient(), _oblique(_patient())
    proj = compute_projections(oblique)
    assert np.allclose(np.array(proj.canonical.GetDirection()).reshape(3, 3), np.eye(3))
    columns = _rod_columns(proj.frontal)
    assert len(columns) > 100 and np.ptp(np.percentile(columns, [5, 95])) <= 2  # 1-mm columns: the spine stays put
    tilted = canonical_image(oblique)  # what the MIPs were made on before: the reoriented tilted grid
    volume = sitk.GetArrayViewFromImage(tilted)
    drift = _rod_columns(np.where(volume.max(axis=1)[::-1] > 300, 0.43, 0.0))
    assert np.ptp(np.percentile(drift, [5, 95])) > 10  # on it the spine ran across the MIP

    row = point_to_row(proj, (0.0, 0.0, -99.0))  # the disk's height maps to a row and back
    _, z_mm, lps, _ = row_to_point(proj, oblique, row)
    assert abs(z_mm + 99.0) < 1.0 and abs(lps[0]) < 8 and abs(lps[1] - 19.5) < 8  # on the rod (x 0, y ~20)

    straight = compute_projections(patient)  # a CT on patient axes is not resampled
    assert straight.canonical.GetSize() == canonical_image(patient).GetSize()
