"""The metrics registry renders valid Prometheus text with bounded labels."""

from __future__ import annotations

import pytest

from switch.server.metrics import MetricsRegistry


def test_counter_gauge_histogram_render():
    registry = MetricsRegistry()
    counter = registry.counter("ponte_things_total", "Things.", ("result",))
    counter.inc("OK")
    counter.inc("OK")
    counter.inc("PAYEE_REJECTED")
    registry.gauge("ponte_depth", "Depth.", lambda: 3)
    histogram = registry.histogram("ponte_wait_seconds", "Wait.", (0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        histogram.observe(value)
    text = registry.render()
    assert 'ponte_things_total{result="OK"} 2' in text
    assert 'ponte_things_total{result="PAYEE_REJECTED"} 1' in text
    assert "# TYPE ponte_depth gauge\nponte_depth 3" in text
    assert 'ponte_wait_seconds_bucket{le="0.1"} 1' in text
    assert 'ponte_wait_seconds_bucket{le="1.0"} 2' in text
    assert 'ponte_wait_seconds_bucket{le="+Inf"} 3' in text
    assert "ponte_wait_seconds_count 3" in text
    assert histogram.quantile(0.5) == 1.0


def test_names_must_be_ponte_and_unique():
    registry = MetricsRegistry()
    with pytest.raises(AssertionError):
        registry.counter("things_total", "no prefix")
    with pytest.raises(AssertionError):
        registry.counter("ponte_things", "a counter without _total")
    registry.gauge("ponte_x", "x", lambda: 1)
    with pytest.raises(AssertionError):
        registry.gauge("ponte_x", "x again", lambda: 2)


def test_label_values_are_escaped():
    registry = MetricsRegistry()
    registry.gauge("ponte_position_minor", "p", lambda: {('a"b\\c',): 1}, ("participant",))
    assert 'ponte_position_minor{participant="a\\"b\\\\c"} 1' in registry.render()


def test_server_counts_read_by_name():
    from switch.core.results import Result, TransferState
    from switch.server.metrics import ServerMetrics

    metrics = ServerMetrics(MetricsRegistry())
    metrics.finals[(TransferState.COMMITTED, Result.OK)] = 3
    metrics.refused[("transfer", Result.PARTY_NOT_FOUND)] = 2
    assert metrics.transfers.values == {("COMMITTED", "OK"): 3}
    assert metrics.refusals.values == {("transfer", "PARTY_NOT_FOUND"): 2}
    text = metrics.registry.render()
    assert 'ponte_transfers_total{state="COMMITTED",result="OK"} 3' in text
    assert 'ponte_requests_refused_total{request_type="transfer",result="PARTY_NOT_FOUND"} 2' \
        in text
