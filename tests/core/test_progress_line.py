"""The CLI's live line for a seed set: its ETA follows the rate over the last minute, not one job's
instant figure, and a log file gets a line every 10 s rather than twice a second."""

import io

from core.cli import train
from core.cli.train import LiveLine, _clock


def line_without_thread(monkeypatch) -> tuple[LiveLine, list[float]]:
    clock = [1000.0]
    monkeypatch.setattr(train.time, "monotonic", lambda: clock[0])
    line = LiveLine.__new__(LiveLine)  # no engine, no thread: eta() alone
    line.seen = train.collections.deque()
    return line, clock


def test_eta_uses_the_workers_figure_until_ten_seconds_are_seen(monkeypatch):
    line, clock = line_without_thread(monkeypatch)
    assert line.eta(0, 1000, [None, 40.0, 90.0]) == 90.0  # the slowest job's own figure
    clock[0] += 5
    assert line.eta(50, 1000, [30.0]) == 30.0
    clock[0] += 5  # 10 s, 100 steps: 10 steps/s, 900 steps left
    assert line.eta(100, 1000, [3.0]) == 90.0


def test_a_pause_slows_the_eta_instead_of_making_it_jump(monkeypatch):
    line, clock = line_without_thread(monkeypatch)
    for step in range(0, 600, 100):  # 10 steps/s for 50 s
        line.eta(step, 1200, [])
        clock[0] += 10
    paused = line.eta(500, 1200, [9999.0])  # an evaluation: no steps for 10 s; the worker's figure spikes
    assert 70 <= paused <= 90  # 700 steps at 500 steps / 60 s: 84 s, not 9999
    clock[0] += 120  # the window forgets what is older than a minute
    assert line.eta(500, 1200, [42.0]) == 42.0


def test_clock_reads_hours_past_an_hour():
    assert (_clock(65), _clock(5), _clock(3600 + 15 * 60), _clock(None), _clock(float("nan"))) == ("01:05", "00:05", "1:15:00", "?", "?")


def test_a_log_file_gets_a_line_at_most_every_ten_seconds(monkeypatch):
    line, clock = line_without_thread(monkeypatch)
    line.stream, line.tty, line.every = io.StringIO(), False, 0
    line.last, line.last_counts, line.last_written = "", "", 0.0
    renders = iter(["4 runs: 4 RUNNING | steps 10/100", "4 runs: 4 RUNNING | steps 20/100",
                    "4 runs: 1 SUCCEEDED, 3 RUNNING | steps 30/100"])
    waits = iter([False, False, False, True])
    line.render = lambda: next(renders)
    line.done = type("Done", (), {"wait": lambda self, _: next(waits)})()
    line._loop()
    assert line.stream.getvalue().splitlines() == ["4 runs: 4 RUNNING | steps 10/100",
                                                   "4 runs: 1 SUCCEEDED, 3 RUNNING | steps 30/100"]


def test_one_runs_line_in_a_log_file_is_throttled_too(monkeypatch):
    line, clock = line_without_thread(monkeypatch)
    line.stream, line.tty, line.every = io.StringIO(), False, 0
    line.last, line.last_counts, line.last_written = "", "", 0.0
    renders = iter([f"step {step}/100 | ETA 00:10" for step in (10, 20, 30)])
    ticks = iter([0.0, 3.0, 11.0])  # seconds after the first line
    waits = iter([False, False, False, True])

    def render():
        clock[0] = 1000.0 + next(ticks)
        return next(renders)

    line.render = render
    line.done = type("Done", (), {"wait": lambda self, _: next(waits)})()
    line._loop()
    assert line.stream.getvalue().splitlines() == ["step 10/100 | ETA 00:10", "step 30/100 | ETA 00:10"]
