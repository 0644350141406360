"""`ponte bench recovery`'s machinery, checked small: recorded ticks copied with every id
renumbered and every time shifted (and a copy that misses one is caught), then the whole
path on a real switch process — record, build, full replay with a snapshot, restart from
it over SIGKILL, snapshots under load."""

from __future__ import annotations

import msgspec
import pytest
from rich.console import Console
from rich.progress import Progress

from bench import recovery_bench as rb
from ledger.journal_format import Record
from switch.core import codec
from switch.core.messages import (
    Party,
    PayeeAnswer,
    PayeeAnswered,
    TransferRequest,
    TransferRequested,
)

T0 = 1_780_000_000 * 10**9


def recorded(index: int, now_ns: int) -> Record:
    transfer_id = rb._transfer_id(0, index)
    request = TransferRequest(transfer_id=transfer_id, payee=Party(
        alias_type="MSISDN", alias_value="+254700000002"), amount_minor=100, currency="KES",
        expires_at_ns=now_ns + 10**10, payer_user_ref="bench-user")
    payload = codec.encode_tick([
        TransferRequested(payer_participant_id=1, payee_participant_id=2,
                          payee_account_ref="acc", request=request),
        PayeeAnswered(payee_participant_id=2, answer=PayeeAnswer(
            payer_participant_id=1, transfer_id=transfer_id, accepted=True))])[0]
    return Record(sequence=index + 1, kind=16, now_ns=now_ns, payload=payload,
                  record_hash=b"\0" * 32)


def test_a_copy_renumbers_every_id_and_shifts_every_time_and_nothing_else():
    records = [recorded(index, T0 + index * 10**6) for index in range(3)]
    recording = rb.Recording(data_dir="", config={}, keys={}, participant_ids={}, setup=[],
                             traffic=records, record_s=0.0, transfers=3)
    _setup, templates, span_ns = rb._templates(recording)
    assert span_ns > records[-1].now_ns - records[0].now_ns
    assert all(len(t.id_offsets) == 2 and len(t.times) == 1 for t in templates)
    rb._check_copy(templates, span_ns)
    (first, second) = codec.decode_tick(rb._copy(templates[0], b"00000007", -span_ns))
    assert first.request.transfer_id == second.answer.transfer_id == "r00000007-0000000"
    assert first.request.expires_at_ns == records[0].now_ns + 10**10 - span_ns
    assert msgspec.structs.replace(first.request, transfer_id="r00000000-0000000",
                                   expires_at_ns=records[0].now_ns + 10**10) == (
        codec.decode_tick(records[0].payload)[0].request)
    # A template that misses a timestamp is caught before anything is written.
    templates[1].times.clear()
    with pytest.raises(AssertionError):
        rb._check_copy(templates, span_ns)


@pytest.mark.slow
def test_record_build_replay_restart_and_snapshots_under_load_on_a_real_switch(tmp_path):
    with Progress(console=Console(quiet=True)) as progress:
        recording = rb.record(str(tmp_path), 200)
        config = {**recording.config, "snapshots_enabled": True,
                  "snapshot_every_events": 1_000}
        built = rb.build(recording, 2_000, 256 * 1024, progress)
        assert built.transfers == 2_000 and built.segments >= 2  # rotated
        replayed = rb.replay_and_snapshot(recording, built, 1_000, config, progress)
        assert replayed.committed == 2_000  # every built transfer commits on replay
        assert 900 <= replayed.tail_events <= 1_100
        (run,) = rb.restart_runs(recording, replayed, config, 1, progress)
        assert run["replayed_events"] == replayed.tail_events  # from the snapshot
        load = rb.snapshots_under_load(recording, config, 100.0, 4.0, 1.0, progress)
    assert load["payments"] == 400 and load["snapshots"] >= 1
    assert load["snapshot_bytes"] > 0 and load["fork_pause_ms"] > 0
    assert 0 <= load["payments_during_snapshots"] <= 400
    # The switch's own tick latency over the load, both ways: counted ticks, a p99 each.
    assert load["tick_count_outside"] + load["tick_count_during_snapshot"] > 0
    assert load["tick_p99_ms_outside"] is None or load["tick_p99_ms_outside"] > 0
    if load["tick_count_during_snapshot"]:
        assert load["tick_p99_ms_during_snapshot"] > 0
        assert "tick_p99_impact_ms" in load or load["tick_p99_ms_outside"] is None
    # Pauses of the machine are listed (usually none) and the payments they held counted.
    assert all(freeze["ms"] >= 150 for freeze in load["host_freezes"])
    assert 0 <= load["payments_in_host_freezes"] <= 400
    if not load["host_freezes"]:
        assert load["payments_in_host_freezes"] == 0
        assert load["p99_ms_outside_no_freeze"] == load["p99_ms_outside"]


def test_a_p99_is_read_off_cumulative_buckets_like_prometheus():
    buckets = [(0.001, 10), (0.002, 60), (0.005, 100), (float("inf"), 100)]
    assert rb.histogram_quantile(buckets, 0.5) == pytest.approx(0.0018)
    assert rb.histogram_quantile(buckets, 0.99) == pytest.approx(0.002 + 0.003 * 39 / 40)
    overflow = [(0.001, 10), (float("inf"), 100)]
    assert rb.histogram_quantile(overflow, 0.99) == 0.001
    text = ('ponte_tick_latency_seconds_bucket{snapshot="idle",le="0.001"} 3\n'
            'ponte_tick_latency_seconds_bucket{snapshot="idle",le="+Inf"} 4\n'
            'ponte_tick_latency_seconds_bucket{snapshot="writing",le="0.001"} 1\n')
    assert rb.tick_latency_buckets(text) == {"idle": [(0.001, 3), (float("inf"), 4)],
                                             "writing": [(0.001, 1)]}


@pytest.mark.slow
def test_sigterm_while_the_journal_replays_stops_the_switch_gracefully(tmp_path):
    """A SIGTERM during recovery (a long journal, no snapshot yet) stops the switch with
    its graceful stop and exit 0 once it has started — it used to kill it (exit -15) when
    it came before the handlers were installed, after /health already answered."""
    import signal
    import time

    from switch.launcher import SwitchProcess

    with Progress(console=Console(quiet=True)) as progress:
        recording = rb.record(str(tmp_path), 200)
        rb.build(recording, 400_000, 256 * 1024 * 1024, progress)
    switch = SwitchProcess({**recording.config, "snapshots_enabled": False})
    with open(switch.log_path, "rb") as file:
        earlier = len(file.read())  # the recording's own lines

    def this_run() -> str:
        with open(switch.log_path, "rb") as file:
            return file.read()[earlier:].decode(errors="replace")

    switch.start(wait_healthy=False)
    deadline = time.monotonic() + 60
    while "recovery_started" not in this_run():
        assert time.monotonic() < deadline and switch.process.poll() is None
        time.sleep(0.01)
    assert "server_started" not in this_run()  # still replaying 400,000 transfers
    switch.process.send_signal(signal.SIGTERM)
    assert switch.process.wait(120) == 0, this_run()
    log = this_run()
    assert "server_started" in log and "server_stopped" in log
