"""The rib-frame fallback's cost (issue 24): frames that run on past a rib's traced ends cover the
bone there, and the fallback's few windows hold every voxel it examines in their core."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import defaults, frame_inference
from RibFracSegLib.phantom import PhantomParams, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.preprocess import block_any
from RibFracSegLib.sliding_window import PatchGrid, keep_mask
from RibFracSegLib.window_cover import cover_windows, in_cores

from test_frame_inference import BASE, Recorder, marker_checkpoint, run_frames

PATCH, MARGIN = (64, 64, 64), 16


def scattered_pieces(shape, seed=0):
    """Bone-like pieces: a few dozen small blobs (3-40 voxels) along two curved bands, as rib heads
    and ends left outside their frames lie along the spine and the sternum."""
    rng = np.random.default_rng(seed)
    points = []
    for band_x in (0.3, 0.7):
        for z in np.linspace(10, shape[0] - 10, 12):
            centre = np.array([z, shape[1] * (0.6 + 0.1 * np.sin(z / 30)), shape[2] * band_x])
            blob = centre + rng.integers(-2, 3, size=(int(rng.integers(3, 40)), 3))
            points.append(blob)
    points.append(np.array([[0, 0, 0], [shape[0] - 1, shape[1] - 1, shape[2] - 1]]))  # the volume's corners
    return np.unique(np.clip(np.concatenate(points), 0, np.array(shape) - 1).astype(int), axis=0)


def test_cover_windows_hold_every_point_in_their_core_with_far_fewer_windows_than_the_grid():
    shape = (275, 512, 512)
    points = scattered_pieces(shape)
    boxes = cover_windows(points, shape, PATCH, MARGIN)
    assert in_cores(points, boxes, shape, MARGIN).all()
    for box in boxes:  # whole patches inside the volume
        assert all(b.stop - b.start == p and 0 <= b.start and b.stop <= n for b, p, n in zip(box, PATCH, shape))
    # the grid at overlap 0.5 computes every patch touching a point's block
    mask = np.zeros(shape, bool)
    mask[tuple(points.T)] = True
    grid = PatchGrid.build(shape, PATCH, 0.5)
    touching = sum(keep_mask(grid, block_any(mask)))
    assert len(boxes) <= 0.3 * touching, (len(boxes), touching)
    # a point 15 voxels from a window's face is not in its core: the margin is kept
    assert not in_cores(np.array([[40, 100, 100]]), [(slice(25, 89), slice(60, 124), slice(60, 124))], shape, MARGIN)[0]
    assert in_cores(np.array([[41, 100, 100]]), [(slice(25, 89), slice(60, 124), slice(60, 124))], shape, MARGIN)[0]
    # one window per point at worst, and none for no points
    assert cover_windows(np.zeros((0, 3), int), shape, PATCH, MARGIN) == []
    far = np.array([[0, 0, 0], [200, 300, 400]])
    assert len(cover_windows(far, shape, PATCH, MARGIN)) == 2


def test_frames_run_on_past_a_head_the_trace_stopped_short_of():
    """L6's centreline starts 8 mm into the rib: run on by the training frames' RIB_FRAME_END_MM,
    its frame leaves head bone to the fallback; run on by RIB_FRAME_INFERENCE_END_MM, it covers it."""
    case = generate_phantom(PhantomParams(orientation="LPI", n_fractures=0, **BASE))
    truth = rib_labels_from_phantom(case)
    short = truth.by_name("L6")
    first = int(np.searchsorted(short.arc_mm, 8.0))
    ribs = dataclasses.replace(truth, ribs=[dataclasses.replace(r, centreline_lps=r.centreline_lps[first:])
                                            if r is short else r for r in truth.ribs])
    assert ribs.complete() and defaults.RIB_FRAME_INFERENCE_END_MM > defaults.RIB_FRAME_END_MM
    training_run_on = marker_checkpoint("rib_frame")
    training_run_on.inference["frame_end_mm"] = defaults.RIB_FRAME_END_MM
    recorder = Recorder(0.7)
    before = run_frames(case.image, ribs, training_run_on, recorder)
    after = run_frames(case.image, ribs, marker_checkpoint("rib_frame"))
    assert frame_inference.frame_end_mm(marker_checkpoint("rib_frame")) == defaults.RIB_FRAME_INFERENCE_END_MM
    # with the short run-on, L6's head bone is rib-labelled bone in no frame: the fallback examines it
    labels = sitk.GetArrayViewFromImage(ribs.labels)
    head = (labels == short.label) & (sitk.GetArrayViewFromImage(case.image) > 300.0) & (before.probability == 0.7)
    assert before.fallback_bone_voxels >= 5 and head.sum() == before.fallback_bone_voxels
    assert before.fallback_patches == len(recorder.boxes) >= 1
    # with the inference run-on, L6's frame reaches it: nothing left for the fallback, no patch computed
    assert after.fallback_bone_voxels == 0 and after.fallback_patches == 0 and after.fallback_boxes is None
    assert after.uncovered_bone_voxels <= before.uncovered_bone_voxels - before.fallback_bone_voxels
    assert after.windows >= before.windows


def with_labelled_blob(case, ribs, centre_lps, label, hu=700.0, size=3):
    """The CT and the rib labels with a cube of bone (`size` voxels a side) labelled `label` at `centre_lps`."""
    ijk = np.rint(case.image.TransformPhysicalPointToContinuousIndex([float(v) for v in centre_lps])).astype(int)
    lo = ijk - size // 2
    box = tuple(slice(a, a + size) for a in lo[::-1])
    ct, labels = sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(ribs.labels)
    ct[box], labels[box] = hu, label
    images = []
    for array, like in ((ct, case.image), (labels, ribs.labels)):
        images.append(sitk.GetImageFromArray(array))
        images[-1].CopyInformation(like)
    blob = np.zeros(ct.shape, bool)
    blob[box] = True
    return images[0], dataclasses.replace(ribs, labels=images[1]), blob


def test_bone_labelled_rib_beside_its_frame_is_reported_not_examined_but_past_its_end_is_examined():
    """Bone grown into L6's label 14 mm out from its mid-arc (beyond the frame's half width, as contrast-filled
    veins grow into rib 1's label on LIDC-IDRI-0001) is counted unexamined and named in the note; the same bone
    30 mm past L6's anterior end (where a rib goes on beyond a trace that stopped short) goes to the fallback."""
    case = generate_phantom(PhantomParams(orientation="LPI", n_fractures=0, **BASE))
    truth = rib_labels_from_phantom(case)
    rib = truth.by_name("L6")
    from RibFracSegLib.ribs.frame_build import body_centre, rib_frame
    frame = rib_frame(rib, body_centre(truth.ribs), voxel_mm=0.6, half_mm=7.2)
    mid = len(frame.points_lps) // 2
    beside, past = frame.points_lps[mid] + 14.0 * frame.u[mid], frame.points_lps[-1] + 30.0 * frame.tangent[-1]
    results = {}
    for name, where in (("beside", beside), ("past", past)):
        image, ribs, blob = with_labelled_blob(case, truth, where, rib.label)
        assert ribs.complete()
        results[name] = run_frames(image, ribs, marker_checkpoint("rib_frame"), Recorder(0.7)), image, blob
    result, image, blob = results["beside"]
    bone = blob & (sitk.GetArrayViewFromImage(image) > 300.0)
    assert bone.sum() == 27 and result.beside_rib_voxels == 27 and result.fallback_bone_voxels == 0
    assert result.fallback_patches == 0 and np.all(result.probability[bone] == 0.0)
    assert result.unexamined_bone_voxels >= 27 and result.summary()["beside_rib_mm3"] == pytest.approx(
        round(27 * float(np.prod(image.GetSpacing())), 1))
    assert "labelled rib but beside its rib's frame" in result.note()
    result, image, blob = results["past"]
    bone = blob & (sitk.GetArrayViewFromImage(image) > 300.0)
    assert result.beside_rib_voxels == 0 and result.fallback_bone_voxels == bone.sum() == 27
    assert result.fallback_patches == 1 and np.all(result.probability[bone] == 0.7)


def test_beside_an_incomplete_rib_set_the_fallback_keeps_to_the_rib_cage():
    """The rib step's own ribs of a small 3 mm phantom, left ribs 5-12 dropped as if missed: the set is
    incomplete, so the fallback examines bone no frame reaches wherever a missed rib can lie, the rib step's cage.
    Of all the phantom's bone (as if no frame reached any), it examines nearly all rib bone and little
    of the vertebrae and sternum (the demo's false positives sat on the sternum); without a cage, all."""
    from RibFracSegLib.frame_coverage import fallback_bone
    from RibFracSegLib.phantom.tissue import Tissue
    from RibFracSegLib.ribs import segment_ribs

    case = generate_phantom(PhantomParams(orientation="LPS", n_fractures=0, **BASE))
    found = segment_ribs(case.image)
    ribs = dataclasses.replace(found, ribs=[r for r in found.ribs if not (r.side == "L" and (r.number or 0) >= 5)])
    assert found.complete() and not ribs.complete() and ribs.cage is not None
    bone = sitk.GetArrayFromImage(case.image) > defaults.BONE_HU
    examined = fallback_bone(bone, ribs, image=case.image)
    tissue = sitk.GetArrayViewFromImage(case.tissue)
    rib = bone & (sitk.GetArrayViewFromImage(case.rib_labels) > 0)
    axial = bone & np.isin(tissue, [Tissue.CORTICAL, Tissue.CANCELLOUS])  # vertebrae, sternum
    assert rib.sum() > 2000 and axial.sum() > 2000
    assert examined[rib].mean() >= 0.9, examined[rib].mean()
    assert examined[axial].mean() <= 0.15, examined[axial].mean()
    assert fallback_bone(bone, dataclasses.replace(ribs, cage=None), image=case.image).sum() == bone.sum()
