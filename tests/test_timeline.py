"""cnnbook.timeline: the milestones and their plot (14.17)."""

from __future__ import annotations

import pytest

from cnnbook import timeline


def test_timeline_covers_the_history() -> None:
    years = {m.year for m in timeline.HISTORY}
    assert {1959, 1962, 1980, 1989, 1998, 2012, 2014, 2015, 2017, 2019, 2020, 2022} <= years
    fig = timeline.plot_timeline()
    assert len(fig.axes) == 2
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(texts) == len(timeline.HISTORY)
    assert any("Neocognitron" in t for t in texts)
    assert len(timeline.plot_timeline(timeline.HISTORY[:2]).axes) == 1
    with pytest.raises(ValueError, match="at least one event"):
        timeline.plot_timeline(())
