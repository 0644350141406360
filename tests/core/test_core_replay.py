"""Event sourcing: journaled events replayed into a fresh core and ledger rebuild the same
state, and recovery says which timers to re-arm and which credit requests to re-send.
Also the bounded tables: retention, eviction only after expiry, SERVER_BUSY, ConsultStore."""

from __future__ import annotations

import pytest

from core_helpers import (
    BANK_A,
    BANK_B,
    S,
    WALLET_C,
    World,
    fingerprint,
    only,
    outcome_to,
    refusal,
)
from switch.core import CoreConfig, ProtocolError, Result, SwitchCore, TransferState
from switch.core.codec import decode_event, decode_events, encode_event
from switch.core.messages import (
    ArmTimer,
    ConsultStore,
    CreditRequest,
    RequestToPayNotice,
    Send,
)


def busy_world(world: World) -> None:
    """A mixed history: commits, rejections, expiry, returns, RTPs, admin, protocol errors."""
    committed, _ = world.send_transfer(amount_minor=5_000)
    world.answer(committed)
    rejected, _ = world.send_transfer(payee=WALLET_C)
    world.answer(rejected, accepted=False)
    expired, commands = world.send_transfer()
    timer = only(commands, ArmTimer)
    world.now_ns = timer.deadline_ns
    world.fire(timer.timer_id)
    ret = world.return_event(committed, 1_000)
    world.step(ret)
    world.answer(ret)
    rtp = world.rtp_event()
    world.step(rtp)
    world.decide(rtp, approved=True, transfer_id="rtp-pay")
    try:
        world.answer(committed, sender=WALLET_C)  # journaled by a careless shell; replays too
    except ProtocolError:
        pass
    world.step(world.transfer_event(currency="USD"))  # refused, changes nothing
    world.send_transfer(amount_minor=700)  # left in flight
    world.step(world.rtp_event(payee=WALLET_C, payer=BANK_B))  # left open
    world.advance(1 * S)


def replayed(world: World, ledger_cls) -> tuple[SwitchCore, list]:
    journal = [encode_event(now_ns, event) for now_ns, event in world.events]
    core = SwitchCore(world.config, ledger_cls(world.ledger.config))
    commands = core.replay(decode_events(journal))
    return core, commands


def test_replay_rebuilds_the_identical_core_and_ledger(world, ledger_cls):
    busy_world(world)
    core, _ = replayed(world, ledger_cls)
    assert fingerprint(core) == fingerprint(world.core)
    assert core.ledger.digest() == world.ledger.digest()
    assert core.ledger.totals() == world.ledger.totals()


def test_replay_on_the_other_twin_gives_the_same_ledger(world):
    import ledger

    if ledger.CompiledLedger is None:
        pytest.skip("compiled ledger not built")
    busy_world(world)
    other = ledger.PureLedger if world.ledger.implementation == "compiled" else (
        ledger.CompiledLedger)
    core, _ = replayed(world, other)
    assert core.ledger.digest() == world.ledger.digest()


def test_recovery_rearms_timers_and_resends_credit_requests_and_notices(world, ledger_cls):
    busy_world(world)
    core, commands = replayed(world, ledger_cls)
    armed = {c.timer_id: c.deadline_ns for c in commands if isinstance(c, ArmTimer)}
    assert armed == world.core.live_timers()
    assert len(armed) == 3  # two transfers in flight (rtp-pay and the 700), one open RTP
    credit = [c for c in commands if isinstance(c, Send) and isinstance(c.message, CreditRequest)]
    notices = [c for c in commands
               if isinstance(c, Send) and isinstance(c.message, RequestToPayNotice)]
    in_flight = [r for r in world.core.transfer_records() if r.state == TransferState.FORWARDED]
    assert len(credit) == len(in_flight) == world.core.in_flight_count
    assert {c.message.transfer_id for c in credit} == {r.transfer_id for r in in_flight}
    assert [n.participant_id for n in notices] == [BANK_B]
    # The recovered core carries on: the payee answers the re-sent credit request.
    record = in_flight[0]
    from switch.core.messages import PayeeAnswer, PayeeAnswered

    answer = PayeeAnswered(payee_participant_id=record.payee_participant_id, answer=PayeeAnswer(
        payer_participant_id=record.payer_participant_id, transfer_id=record.transfer_id,
        accepted=True))
    assert outcome_to(core.step(answer, world.now_ns), record.payer_participant_id).state == (
        TransferState.COMMITTED)


def test_a_journal_record_round_trips_every_event(world):
    busy_world(world)
    for now_ns, event in world.events:
        assert decode_event(encode_event(now_ns, event)) == (now_ns, event)


def test_an_event_built_by_hand_is_checked_before_it_is_journaled(world):
    import msgspec

    from switch.core.codec import validated

    good = world.transfer_event()
    assert validated(good) == good
    with pytest.raises(msgspec.ValidationError):
        validated(world.transfer_event(amount_minor=0))


def test_transfer_journal_record_is_small(world):
    event = world.transfer_event()
    size = len(encode_event(world.now_ns, event))
    assert size < 250, size  # budget: ~200 bytes per transfer in the journal


# -- bounded tables --------------------------------------------------------------------


def small_world(ledger_cls, retained: int, in_flight: int) -> World:
    return World(ledger_cls, config=CoreConfig(
        transfers_retained_max=retained, in_flight_max=in_flight, debug_checks=True,
        expiry_ms_max=60_000))


def test_without_finals_kept_until_expiry_a_full_table_drops_the_oldest_final_at_once(
        ledger_cls):
    """With a durable history behind it (the server's setting then), the core's table bounds
    what is in flight and the recent finals only, not rate x expiry: a full table drops its
    oldest final though it has not expired, never a transfer in flight."""
    world = World(ledger_cls, config=CoreConfig(
        transfers_retained_max=4, in_flight_max=2, debug_checks=True, expiry_ms_max=60_000,
        finals_kept_until_expiry=False))
    events = []
    for _ in range(3):
        event, _ = world.send_transfer(expires_in_ns=30 * S)
        world.answer(event)
        events.append(event)
    waiting, _ = world.send_transfer(expires_in_ns=30 * S)  # in flight, never dropped
    assert world.core.transfers_retained == 4
    for dropped in events:
        event, _ = world.send_transfer(expires_in_ns=30 * S)
        assert world.core.transfer_outcome(BANK_A, dropped.request.transfer_id) is None
        assert world.core.transfer_outcome(BANK_A, waiting.request.transfer_id) is not None
        world.answer(event)
    assert world.core.transfers_retained == 4
    # At in_flight_max, SERVER_BUSY as ever, and nothing dropped.
    world.send_transfer(expires_in_ns=30 * S)
    assert world.core.in_flight_count == 2
    before = world.fingerprint()
    assert refusal(world.step(world.transfer_event())).result == Result.SERVER_BUSY
    assert world.fingerprint() == before


def test_final_transfers_are_dropped_only_after_their_expiry(ledger_cls):
    world = small_world(ledger_cls, retained=4, in_flight=2)
    events = []
    for _ in range(4):
        event, _ = world.send_transfer(expires_in_ns=30 * S)
        world.answer(event)
        events.append(event)
    assert world.core.transfers_retained == 4
    # Full, and the oldest has not expired: a new transfer is refused, nothing dropped.
    before = world.fingerprint()
    assert refusal(world.step(world.transfer_event())).result == Result.SERVER_BUSY
    assert world.fingerprint() == before
    # Past the oldest expiry: it is dropped to make room.
    world.now_ns = events[0].request.expires_at_ns
    world.send_transfer()
    assert world.core.transfer_outcome(BANK_A, events[0].request.transfer_id) is None
    assert world.core.transfer_outcome(BANK_A, events[1].request.transfer_id) is not None
    # A resend of the dropped one cannot pay twice: expired, so the shell's store answers.
    consult = only(world.step(events[0]), ConsultStore)
    assert consult.result_if_absent == Result.TRANSFER_EXPIRED
    assert consult.transfer_id == events[0].request.transfer_id
    # A status query for it goes to the store as well.
    assert only(world.status(BANK_A, BANK_A, events[0].request.transfer_id),
                ConsultStore).result_if_absent == Result.TRANSFER_NOT_FOUND


def test_in_flight_bound_refuses_with_server_busy(ledger_cls):
    world = small_world(ledger_cls, retained=10, in_flight=2)
    first, _ = world.send_transfer()
    world.send_transfer()
    assert refusal(world.step(world.transfer_event())).result == Result.SERVER_BUSY
    world.answer(first)
    _, commands = world.send_transfer()
    assert only(commands, ArmTimer)


def test_core_refuses_a_ledger_too_small_for_its_in_flight_bound(ledger_cls):
    from ledger import LedgerConfig

    with pytest.raises(AssertionError):
        SwitchCore(CoreConfig(in_flight_max=100), ledger_cls(LedgerConfig(pending_max=100)))


def test_core_refuses_a_used_ledger(world, ledger_cls):
    with pytest.raises(AssertionError):
        SwitchCore(world.config, world.ledger)



# -- snapshots -------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.6, 0.9, 1.0])
def test_snapshot_then_replaying_the_rest_equals_replaying_everything(world, ledger_cls, cut):
    busy_world(world)
    journal = [encode_event(now_ns, event) for now_ns, event in world.events]
    position = int(len(journal) * cut)
    prefix = SwitchCore(world.config, ledger_cls(world.ledger.config))
    prefix.replay(decode_events(journal[:position]))
    data = prefix.snapshot(journal_position=position)
    restored, restored_position = SwitchCore.from_snapshot(world.config, ledger_cls, data)
    assert restored_position == position
    assert fingerprint(restored) == fingerprint(prefix)
    commands = restored.replay(decode_events(journal[restored_position:]))
    assert fingerprint(restored) == fingerprint(world.core)
    assert restored.ledger.digest() == world.ledger.digest()
    full, full_commands = replayed(world, ledger_cls)
    assert commands == full_commands


def test_snapshot_keeps_in_flight_returns_voidable(world, ledger_cls):
    original, _ = world.send_transfer(amount_minor=1_000)
    world.answer(original)
    ret = world.return_event(original, 600)
    world.step(ret)  # in flight
    restored, _ = SwitchCore.from_snapshot(world.config, ledger_cls, world.core.snapshot(0))
    from switch.core.messages import PayeeAnswer, PayeeAnswered

    commands = restored.step(PayeeAnswered(payee_participant_id=BANK_A, answer=PayeeAnswer(
        payer_participant_id=BANK_B, transfer_id=ret.request.transfer_id, accepted=False)),
        world.now_ns)
    assert outcome_to(commands, BANK_B).state == TransferState.REJECTED
    # The room the return held on the original is free again.
    again = world.return_event(original, 1_000)
    commands = restored.step(again, world.now_ns)
    assert any(isinstance(c, ArmTimer) for c in commands)


def test_snapshot_round_trips_after_hostile_ids(world, ledger_cls):
    """Ids a hostile or buggy participant tries through every entrance the core builds a
    transfer from (an approval names its transfer id) never reach the state: a snapshot
    taken after such traffic restores, and equals the core it was taken from."""
    from switch.core.codec import validated

    hostile = ["a/b", "a b", "t-1\n", "caf\u00e9", "x" * 65, "", "\r"]
    for transfer_id in hostile:
        rtp = world.rtp_event(payee=BANK_B, payer=BANK_A)
        world.step(rtp)
        world.decide(rtp, approved=True, transfer_id=transfer_id)  # built by hand: no decoder
        world.step(world.transfer_event(transfer_id=transfer_id))
        ret_of, _ = world.send_transfer()
        world.answer(ret_of)
        world.step(world.return_event(ret_of, 10, transfer_id=transfer_id))
    busy_world(world)
    restored, _ = SwitchCore.from_snapshot(world.config, ledger_cls, world.core.snapshot(0))
    assert fingerprint(restored) == fingerprint(world.core)
    for record in world.core.transfer_records():  # every id the core holds is an Id
        validated(record.event)
