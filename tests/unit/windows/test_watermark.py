from pipeline.windows import timing
from pipeline.windows.timing import NO_WATERMARK, window_start
from pipeline.windows.watermark import Watermark


def test_windows_are_aligned_to_the_epoch():
    assert window_start(0, 60_000) == 0
    assert window_start(59_999, 60_000) == 0
    assert window_start(60_000, 60_000) == 60_000
    assert window_start(1_700_000_123_456, 60_000) == 1_700_000_100_000


def test_nothing_is_late_before_the_first_event():
    wm = Watermark(60_000, 120_000)
    assert wm.value == NO_WATERMARK
    assert not wm.is_late(0)


def test_event_is_late_once_its_window_ended_before_the_watermark():
    wm = Watermark(60_000, 120_000)
    wm.observe(600_000)  # watermark = 480_000
    assert wm.value == 480_000
    assert wm.is_late(419_999)  # window [360k, 420k) ended before 480k
    assert wm.is_late(479_999)  # window [420k, 480k) ends exactly at the watermark
    assert not wm.is_late(480_000)  # window [480k, 540k) still open


def test_watermark_never_moves_backwards():
    wm = Watermark(60_000, 0)
    wm.observe(300_000)
    wm.observe(100_000)
    assert wm.value == 300_000


def test_a_window_is_final_once_it_ended_at_or_before_the_watermark():
    assert timing.window_end(60_000, 60_000) == 120_000
    assert not timing.is_final(60_000, 60_000, 119_999)
    assert timing.is_final(60_000, 60_000, 120_000)
    assert not timing.is_final(0, 60_000, NO_WATERMARK)  # nothing is final before the first event
    assert timing.is_late(119_999, 60_000, 120_000) and not timing.is_late(120_000, 60_000, 120_000)
    assert timing.watermark(NO_WATERMARK, 5_000) == NO_WATERMARK and timing.watermark(9_000, 5_000) == 4_000
    assert timing.open_window_start(130_000, 60_000, 120_000) == 120_000
    assert timing.open_window_start(119_999, 60_000, 120_000) is None
