"""The engine's window (switch/g2p/window.py) driven by a fake clock: it grows while rows
come back as fast as the base, shrinks when a queue builds, halves on an expiry, and stays
within its bounds."""

from __future__ import annotations

from switch.g2p.window import (
    BASE_INTERVALS,
    CONTROL_INTERVAL_S,
    CONTROL_SAMPLES_MIN,
    EXPIRY_CUT_INTERVAL_S,
    QUEUE_FACTOR,
    QUEUE_SLACK_S,
    Window,
)


class Feed:
    """Rows paid at a steady round trip, one control interval at a time."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.now = 0.0

    def interval(self, round_trip_s: float, *, used: int | None = None,
                 samples: int = CONTROL_SAMPLES_MIN * 2) -> int:
        window = self.window
        window.used(window.size if used is None else used)
        step = CONTROL_INTERVAL_S / samples
        for _ in range(samples):
            self.now += step
            window.paid(round_trip_s, self.now)
        self.now += 1e-6
        window.paid(round_trip_s, self.now)  # closes the interval
        return window.size


def test_it_starts_at_the_minimum_and_grows_to_the_maximum_while_round_trips_stay_low():
    feed = Feed(Window(64, 1_000, now=0.0))
    assert feed.window.size == 64
    sizes = [feed.interval(0.004) for _ in range(60)]
    assert sizes == sorted(sizes) and sizes[0] > 64
    assert sizes[-1] == 1_000  # capped


def test_a_queue_building_shrinks_it_and_never_below_the_minimum():
    feed = Feed(Window(64, 4_096, now=0.0))
    for _ in range(20):
        feed.interval(0.004)
    grown = feed.window.size
    assert grown > 500
    shrunk = feed.interval(0.004 * QUEUE_FACTOR + QUEUE_SLACK_S + 0.001)  # a queue
    assert shrunk == grown - grown // 5
    for _ in range(BASE_INTERVALS - 22):  # the fast intervals are still the base
        feed.interval(0.050)
    assert feed.window.size == 64


def test_a_round_trip_within_the_slack_is_no_queue():
    feed = Feed(Window(64, 4_096, now=0.0))
    feed.interval(0.004)
    before = feed.window.size
    assert feed.interval(0.004 * QUEUE_FACTOR + QUEUE_SLACK_S * 0.9) > before


def test_it_does_not_grow_while_the_engine_leaves_it_unused():
    feed = Feed(Window(64, 4_096, now=0.0))
    for _ in range(20):
        feed.interval(0.004, used=40)  # under three quarters of 64
    assert feed.window.size == 64


def test_too_few_rows_in_an_interval_change_nothing():
    feed = Feed(Window(64, 4_096, now=0.0))
    feed.interval(0.004, samples=CONTROL_SAMPLES_MIN - 2)
    assert feed.window.size == 64
    feed.interval(1.0, samples=CONTROL_SAMPLES_MIN - 2)  # nor a slow one
    assert feed.window.size == 64


def test_a_payee_that_became_slower_for_good_becomes_the_base_and_it_grows_again():
    feed = Feed(Window(64, 4_096, now=0.0))
    for _ in range(30):
        feed.interval(0.004)
    for _ in range(BASE_INTERVALS):
        feed.interval(0.040)  # the fast intervals age out of the base
    low = feed.window.size
    assert feed.interval(0.040) > low


def test_an_expiry_halves_it_at_most_once_a_cut_interval():
    window = Window(64, 4_096, now=0.0)
    window.size = 1_024
    window.expired(10.0)
    window.expired(10.5)  # the same burst of expiries: one cut
    assert (window.size, window.expiry_cuts) == (512, 1)
    window.expired(10.0 + EXPIRY_CUT_INTERVAL_S)
    assert (window.size, window.expiry_cuts) == (256, 2)
    for step in range(10):
        window.expired(20.0 + step * EXPIRY_CUT_INTERVAL_S)
    assert window.size == 64


def test_a_maximum_below_the_minimum_is_the_window():
    window = Window(64, 8, now=0.0)
    assert (window.minimum, window.size) == (8, 8)
