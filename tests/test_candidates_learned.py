"""What the shipped candidate classifier learned: on a phantom no training saw and on the held-out
real chest CT (LIDC-IDRI-0314) with a fracture simulated into a rib, it calls the fracture a
fracture and an intact stretch of the same rib not; on the phantom it tells a displaced break from
a buckle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from RibFracSegLib.candidates.classifier import load_classifier
from RibFracSegLib.candidates.crops import extract_crops
from RibFracSegLib.candidates.training import predict
from RibFracSegLib.checkpoint import load_checkpoint
from RibFracSegLib.shipped import shipped_model

REAL_CHEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "LIDC-IDRI-0314.nii.gz"
PHANTOM_SEED = 7001  # not a training (301-305), validation (303) or benchmark (2024, 2025) data-set seed
INTACT_MM = 35.0  # the intact point lies this far along the rib from the break


@pytest.fixture(scope="module")
def spec():
    spec = load_classifier(load_checkpoint(shipped_model("fracture_ct")).candidate_classifier)
    assert spec is not None, "the shipped checkpoint carries no candidate classifier"
    return spec


def _probabilities(spec, image, points) -> np.ndarray:
    return predict(spec.model, extract_crops(image, points, spec.voxels, spec.spacing_mm), spec.voxels)


def _along(line: np.ndarray, point, mm: float) -> np.ndarray:
    """The centreline point `mm` further along the line from its point nearest `point` (or back, if
    the line ends first)."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))])
    here = arc[int(np.argmin(np.linalg.norm(line - np.asarray(point), axis=1)))]
    target = here + mm if here + mm < arc[-1] - 10 else here - mm
    return line[int(np.argmin(np.abs(arc - target)))]


def _check(spec, image, displaced, buckle, lines) -> None:
    points = [displaced, buckle, _along(lines[0], displaced, INTACT_MM), _along(lines[1], buckle, INTACT_MM)]
    p = _probabilities(spec, image, points)
    fracture = 1 - p[:, 0]
    floor = spec.min_probability
    assert fracture[0] >= floor and fracture[1] >= floor, f"fractures scored {fracture[:2]}, floor {floor}"
    assert fracture[2] < floor and fracture[3] < floor, f"intact rib scored {fracture[2:]}, floor {floor}"
    assert int(np.argmax(p[0, 1:])) + 1 == 1, f"displaced typed as {p[0, 1:]}"
    assert int(np.argmax(p[1, 1:])) + 1 == 3, f"buckle typed as {p[1, 1:]}"


def test_on_a_held_out_phantom(spec):
    from RibFracSegLib.phantom.dataset import sample_params
    from RibFracSegLib.phantom.generate import generate_phantom

    case = generate_phantom(sample_params(PHANTOM_SEED, fov="thorax", n_fractures=10, slice_mm=2.5))
    first = {kind: next(f for f in case.fractures if f.kind == kind) for kind in ("displaced", "buckle")}
    _check(spec, case.image, first["displaced"].center_lps, first["buckle"].center_lps,
           [case.rib_centerlines_lps[first[k].rib] for k in ("displaced", "buckle")])


@pytest.mark.skipif(not REAL_CHEST.is_file(), reason="../shared/data/real/LIDC-IDRI-0314.nii.gz not present")
def test_on_the_held_out_real_chest_with_a_simulated_fracture(spec):
    """A displaced break in a real rib is a displaced fracture; the same rib 35 mm on is intact.
    (Buckles simulated in real ribs are mostly missed yet: see the model card's figures.)"""
    from RibFracSegLib.io import read_ct
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.simulate.case import simulate_case

    image = read_ct(REAL_CHEST)
    ribs = segment_ribs(image)
    case = simulate_case(image, ribs, 1, np.random.default_rng(2026), kinds=[1])
    assert [b.spec.kind for b in case.fractures] == [1]
    line = {r.label: r.centreline_lps for r in ribs.ribs}[case.fractures[0].spec.rib_label]
    centre = case.fractures[0].center_lps
    p = _probabilities(spec, case.image, [centre, _along(line, centre, INTACT_MM)])
    fracture = 1 - p[:, 0]
    assert fracture[0] >= spec.min_probability > fracture[1], f"fracture, intact rib scored {fracture}"
    assert int(np.argmax(p[0, 1:])) + 1 == 1, f"displaced typed as {p[0, 1:]}"
    original = _probabilities(spec, image, [centre])  # the same place before the break: no fracture
    assert 1 - original[0, 0] < spec.min_probability
