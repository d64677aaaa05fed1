"""The Train page's chart is drawn once per tick for everyone watching the same runs, never left stale."""
from pages.train import SharedCharts
from tests.helpers import FakeClock


def test_pages_watching_one_training_run_share_one_drawing_per_tick():
    clock, drawings = FakeClock(now=100.0), []
    charts = SharedCharts(max_age=1.0, clock=clock)
    draw = lambda: drawings.append(clock.now) or f"chart@{clock.now}"
    runs = ("run-a", None)
    first = charts.get(runs, ["rows: 10"], draw)
    assert first == ("chart@100.0", ["rows: 10"])
    for rows in range(11, 30):            # twenty pages tick within the same second, the run moving on meanwhile
        clock.now += 0.04
        assert charts.get(runs, [f"rows: {rows}"], draw) == first
    assert len(drawings) == 1
    clock.now = 101.1                      # a second later: drawn again, with what the run has now
    assert charts.get(runs, ["rows: 40"], draw) == ("chart@101.1", ["rows: 40"])
    assert charts.get(("run-b", None), ["rows: 40"], draw)[0] == "chart@101.1" and len(drawings) == 3


def test_a_page_given_an_older_drawing_asks_again_until_it_has_the_last_rows():
    clock, drawings = FakeClock(now=100.0), []
    charts = SharedCharts(max_age=1.0, clock=clock)
    draw = lambda: drawings.append(clock.now) or f"chart@{clock.now}"
    charts.get(("run", None), "step 99", draw)
    clock.now += 0.5                        # the run finished: its last rows are written
    _, shown = charts.get(("run", None), "finished", draw)
    assert shown == "step 99", "the page must record what it was shown, so that its next tick differs"
    clock.now += 1.0
    assert charts.get(("run", None), "finished", draw) == ("chart@101.5", "finished")
    clock.now += 30.0                       # nothing changes any more: nothing is drawn again
    assert charts.get(("run", None), "finished", draw) == ("chart@101.5", "finished") and len(drawings) == 2


def test_the_drawings_kept_are_bounded():
    charts = SharedCharts(kept=3, clock=FakeClock(now=100.0))
    for run in range(10):
        charts.get((f"run-{run}", None), 0, lambda: "chart")
    assert len(charts._drawn) == 3
