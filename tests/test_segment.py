"""Cutting an ink mask into digits: grouping, specks, order, touching digits, limits."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_digits.reading import segment


def _blob(mask, x, y, w, h):
    mask[y:y + h, x:x + w] = True


def _ring(mask, x, y, w, h, t=4):
    mask[y:y + h, x:x + w] = True
    mask[y + t:y + h - t, x + t:x + w - t] = False


def test_digits_come_left_to_right_with_small_gaps():
    mask = np.zeros((100, 400), bool)
    # Three "digits" 60 pixels tall, 6 pixels apart (a tenth of their height), given out of
    # order.
    for x in (140, 20, 80):
        _ring(mask, x, 20, 54, 60)
    regions = segment.find_digits(mask)
    assert [r.box for r in regions] == [(20, 20, 74, 80), (80, 20, 134, 80),
                                        (140, 20, 194, 80)]
    assert all(r.mask.shape == (60, 54) for r in regions)


def test_parts_sharing_their_columns_are_one_digit():
    mask = np.zeros((100, 100), bool)
    _blob(mask, 30, 10, 40, 6)  # the separate top bar of a 5 ...
    _ring(mask, 30, 30, 40, 50)  # ... over its body
    regions = segment.find_digits(mask)
    assert len(regions) == 1 and regions[0].box == (30, 10, 70, 80)


def test_specks_and_dots_are_not_digits():
    mask = np.zeros((100, 300), bool)
    _ring(mask, 20, 20, 50, 60)
    _blob(mask, 90, 75, 4, 4)  # a full stop
    _ring(mask, 120, 20, 50, 60)
    _blob(mask, 250, 5, 2, 2)  # dust
    assert len(segment.find_digits(mask)) == 2


def test_mixed_sizes_and_a_slope():
    mask = np.zeros((200, 400), bool)
    _ring(mask, 10, 100, 50, 70)
    _ring(mask, 80, 80, 30, 40)  # a smaller digit, higher up the sloping line
    _ring(mask, 130, 50, 50, 70)
    regions = segment.find_digits(mask)
    assert [r.box[0] for r in regions] == [10, 80, 130]


def test_touching_digits_get_a_cut_at_the_thin_join():
    mask = np.zeros((100, 200), bool)
    _ring(mask, 10, 20, 50, 60, t=6)
    _ring(mask, 62, 20, 50, 60, t=6)
    _blob(mask, 55, 45, 12, 5)  # a short stroke joins them
    (region,) = segment.find_digits(mask)  # one region; `reading` decides on the cut
    parts = segment.split_wide(region)
    assert len(parts) == 2
    assert parts[0].box[2] <= 64 and parts[1].box[0] >= 56


def test_a_wide_single_shape_gets_no_cut():
    mask = np.zeros((100, 300), bool)
    _ring(mask, 10, 20, 200, 60, t=6)  # a wide 0: no thin column in its middle
    mask[20:80, 100:106] = True  # not even with a bar through it
    (region,) = segment.find_digits(mask)
    assert segment.split_wide(region) == [region]


def test_empty_mask_has_no_digits():
    assert segment.find_digits(np.zeros((50, 50), bool)) == []


def test_more_than_the_limit_is_refused():
    mask = np.zeros((60, 40 * 34), bool)
    for k in range(34):
        _ring(mask, 40 * k + 5, 5, 30, 50)
    with pytest.raises(segment.SegmentError, match="found 34 digits in a line; at most 32"):
        segment.find_digits(mask)


def test_thousands_of_marks_are_refused_before_any_grouping():
    mask = np.zeros((1000, 1000), bool)
    mask[::10, ::10] = True  # 10,000 dots
    with pytest.raises(segment.SegmentError, match="10,000 separate marks"):
        segment.find_digits(mask)
