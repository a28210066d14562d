"""Pictures of volumes: three orthogonal slices through the refined map's maximum."""

import numpy as np

from hrcam.volume_views import montage, orthogonal_slices, slice_point, volume_pictures


def test_the_slices_cross_at_the_maximum_and_keep_the_physical_aspect():
    volume = np.zeros((10, 20, 30), dtype=np.float32)
    volume[4, 7, 11] = 1.0
    point = slice_point(volume)
    assert point == (4, 7, 11)
    (a, ra), (b, rb), (c, rc) = orthogonal_slices(volume, point, spacing=(3.0, 1.0, 1.0))
    assert a.shape == (20, 30) and b.shape == (10, 30) and c.shape == (10, 20)
    assert a[7, 11] == b[4, 11] == c[4, 7] == 1.0  # the point is in each slice
    assert (ra, rb, rc) == (30 / 20, 30 / 30, 20 / 30)  # millimetres, not voxels
    picture = montage([(a, ra), (b, rb), (c, rc)], height=40)
    assert picture.shape == (84, 84)  # a 2×2 grid of 40-pixel cells, a 4-pixel gap
    assert picture[:, 80:].max() == 0 and picture[44:, 44:].max() == 0  # the fourth cell
    first = picture[:40, :40]
    rows = np.flatnonzero(first.any(axis=1))
    assert rows.size <= round(40 / ra) + 1  # 30 mm wide, 20 tall: letterboxed, not stretched


def test_the_report_pictures_share_one_layout_and_the_gaps_stay_black():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (12, 16, 16), dtype=np.uint8)
    maps = [rng.random((12, 16, 16)).astype(np.float32) for _ in range(3)]
    pictures = volume_pictures(image, *maps, image, spacing=(2.0, 1.0, 1.0))
    shapes = {key: p.shape for key, p in pictures.items()}
    assert len(set(shapes.values())) == 1 and all(s[2] == 3 for s in shapes.values())
    gap = pictures["cam_high"][:, 224:228]
    assert gap.max() == 0  # the colour map's darkest colour is not black; the gap is
    assert pictures["cam_high"][:224, :224].min(axis=(0, 1)).max() > 0
