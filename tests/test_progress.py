from __future__ import annotations

from biasaudit import progress
from biasaudit.progress import progress_bar


def test_bars_nest_in_one_display_and_clean_up():
    with progress_bar("outer", 3) as outer:
        display = progress._active
        assert display is not None
        with progress_bar("inner", 2) as inner:
            assert progress._active is display and len(display.tasks) == 2
            inner(2)
        assert len(display.tasks) == 1
        outer(3)
        assert display.tasks[0].completed == 3
    assert progress._active is None


def test_disabled_bar_is_a_no_op():
    with progress_bar("off", 10, enabled=False) as advance:
        advance(5)
        assert progress._active is None
