"""The grown ribs' mends (issue 24, demo misses and sternum false positives): a rib broken before
mid-rib keeps its head's part in its centreline when that makes it agree with its partner, and an
upright strip of bone (a sternum's edge outside the sternum band) never joins a rib. Also the
box arithmetic the faster coverage and block grids rest on, in every storage order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.frame_coverage import cells_box, input_box
from RibFracSegLib.orientation import canonical_volume
from RibFracSegLib.preprocess import block_any
from RibFracSegLib.ribs.cage import bridge_breaks
from RibFracSegLib.ribs.centrelines import centreline_from_mask
from RibFracSegLib.ribs.grow import _mend_short
from RibFracSegLib.ribs.numbering import RibRegion

SPACING = 1.0  # mm, isotropic working grid for the synthetic masks


def _length(line: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum())


def _arc_mask(gap: tuple[float, float], radius: float = 60.0) -> np.ndarray:
    """[k, j, i] mask of a rib-like half ring (radius mm, 6 mm thick, 180 degrees round from the back)
    with the stretch of arc angles `gap` (degrees) cut out: a break."""
    k, j, i = np.mgrid[0:12, 0:140, 0:140]
    dj, di = j - 70.0, i - 70.0
    angle = np.degrees(np.arctan2(dj, di))
    ring = (np.abs(np.hypot(dj, di) - radius) <= 3.0) & (np.abs(k - 6) <= 3) & (angle >= 0)
    return ring & ~((angle > gap[0]) & (angle < gap[1]))


def _image(shape) -> sitk.Image:
    image = sitk.Image(*shape[::-1], sitk.sitkUInt8)
    image.SetSpacing((SPACING,) * 3)
    return image


def test_joined_centreline_spans_a_break_the_largest_piece_alone_does_not():
    mask = _arc_mask((50.0, 53.0))  # a 3 mm gap at 50 degrees: the head's side is the smaller piece
    full = np.pi * 60.0  # the whole half ring's centreline
    image = _image(mask.shape)
    alone = centreline_from_mask(mask, image, midline_x_lps=70.0)
    joined = centreline_from_mask(mask, image, midline_x_lps=70.0, join_mm=defaults.RIB_BRIDGE_MM,
                                  join_min_mm3=defaults.RIB_BRIDGE_MIN_MM3)
    assert _length(alone) == pytest.approx(full * 127 / 180, abs=8.0)  # the larger piece only
    assert _length(joined) == pytest.approx(full, abs=8.0)
    wide = _arc_mask((50.0, 62.0))  # a 12 mm gap is no break the rib step bridges
    assert _length(centreline_from_mask(wide, image, 70.0, join_mm=defaults.RIB_BRIDGE_MM,
                                        join_min_mm3=defaults.RIB_BRIDGE_MIN_MM3)) == pytest.approx(
        _length(centreline_from_mask(wide, image, 70.0)), abs=1e-6)


def _line(length_mm: float) -> np.ndarray:
    return np.column_stack([np.linspace(0.0, length_mm, 50), np.zeros(50), np.zeros(50)])


def _region(label: int, side: str, number: int) -> RibRegion:
    return RibRegion(label=label, side=side, z_mean_mm=0.0, z_top_mm=0.0, z_bottom_mm=0.0, voxels=1, number=number)


def test_a_short_rib_is_mended_only_where_that_makes_it_agree_with_its_partner():
    regions = [_region(1, "R", 9), _region(2, "L", 9), _region(3, "R", 4), _region(4, "L", 4), _region(5, "R", 7)]
    lines = {1: _line(148.0), 2: _line(228.0), 3: _line(180.0), 4: _line(270.0), 5: _line(166.0)}
    joined = {1: _line(227.0),  # short against L9, agrees once joined: mended
              3: _line(400.0),  # short against L4, but joined it is too long: kept
              2: _line(300.0),  # the longer of its pair: never lengthened
              5: _line(284.0)}  # no partner to judge by: kept
    out = _mend_short(lines, joined, regions)
    assert _length(out[1]) == pytest.approx(227.0)
    assert [_length(out[k]) for k in (2, 3, 4, 5)] == pytest.approx([228.0, 180.0, 270.0, 166.0])


def test_an_upright_strip_never_joins_a_rib_but_a_far_part_does():
    shape = (80, 60, 120)
    cage = np.zeros(shape, bool)
    regions = np.zeros(shape, np.int32)
    regions[40:46, 20:26, 10:60] = 7  # a rib running sideways
    cage[40:46, 20:26, 10:60] = True
    cage[40:46, 20:26, 63:110] = True  # its far part beyond a 3 mm break
    cage[5:75, 30:36, 52:58] = True  # an upright strip 4 mm in front of it: 70 mm tall, 6 mm across
    out = bridge_breaks(cage, regions.copy(), None, (SPACING,) * 3)
    assert (out[40:46, 20:26, 63:110] == 7).all()
    assert (out[5:75, 30:36, 52:58] == 0).all()
    tall, wide = 70.0, 6.0
    assert tall > defaults.RIB_BRIDGE_UPRIGHT_MM and tall > defaults.RIB_BRIDGE_UPRIGHT_RATIO * wide


@pytest.mark.parametrize("order", list(itertools.permutations(range(3)))[:4])
@pytest.mark.parametrize("flip", [(False, False, False), (True, False, True)])
def test_the_cells_box_in_the_input_grid_is_the_canonical_box(order, flip):
    rng = np.random.default_rng(3)
    canon = rng.integers(-1000, 1500, (37, 45, 53)).astype(np.int16)  # k, j, i in LPS
    stored = np.transpose(canon[tuple(slice(None, None, -1) if f else slice(None) for f in flip)], order)
    image = sitk.GetImageFromArray(np.ascontiguousarray(stored))
    direction = np.zeros((3, 3))
    for input_axis, canon_axis in enumerate(order):  # numpy axis of `stored` -> canonical numpy axis
        direction[2 - canon_axis, 2 - input_axis] = -1.0 if flip[canon_axis] else 1.0
    image.SetDirection(direction.ravel().tolist())
    volume = canonical_volume(image)
    assert np.array_equal(volume.array, canon)
    cells = np.zeros([-(-n // defaults.SKIP_CELL_VOXELS) for n in canon.shape], bool)
    cells[1, 2:4, 3] = True
    cbox = cells_box(cells, canon.shape)
    c = defaults.SKIP_CELL_VOXELS
    assert cbox == (slice(c, 2 * c), slice(2 * c, min(45, 4 * c)), slice(3 * c, min(53, 4 * c)))
    assert np.array_equal(volume.to_input(canon[cbox]), stored[input_box(volume, cbox)])


def test_block_any_per_axis_cells_matches_the_blockwise_definition():
    rng = np.random.default_rng(0)
    mask = rng.random((23, 30, 17)) > 0.995
    for cell in (4, (3, 5, 2)):
        cells = (cell,) * 3 if np.isscalar(cell) else cell
        out = block_any(mask, cell)
        expected = np.zeros([-(-n // c) for n, c in zip(mask.shape, cells)], bool)
        for k, j, i in np.argwhere(mask):
            expected[k // cells[0], j // cells[1], i // cells[2]] = True
        assert np.array_equal(out, expected)
