"""The deciding shell without a loop: items in, ticks out, releases by durable sequence.

Real core, real ledger, real messages; the "journal" is a count of durable records. What
the shell decides here is exactly what the server's sequencer carries out and what the
seeded simulator (tests/sim) drives under faults."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

import ledger
from switch.core import CoreConfig, SettlementModel, SwitchCore
from switch.core.messages import (
    AdminAnswer,
    CreditRequest,
    CurrencyAdded,
    FundsDeposited,
    ParticipantAccountOpened,
    ParticipantAdded,
    Party,
    PayeeAnswer,
    Refused,
    StatusQuery,
    TimerFired,
    TransferOutcome,
    TransferRequest,
    TransferRequested,
)
from switch.core import codec
from switch.core.results import Result, TransferState
from switch.server.metrics import MetricsRegistry, ServerMetrics
from switch.server.shell import (
    ITEM_ADMIN,
    ITEM_STATUS,
    ITEM_SUBMIT,
    ITEM_TIMER,
    OutcomeArchive,
    Shell,
)

T0 = 1_700_000_000 * 10**9
S = 10**9
PAYER, PAYEE, OTHER = 1, 2, 3
ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")
ROUTE = (PAYEE, "acc-1")


def token(national_id: str) -> str:
    return hashlib.sha256(national_id.encode()).hexdigest()


class Rig:
    """A shell over a fresh core, and a journal that is a list of durable records."""

    def __init__(self, **config) -> None:
        values = dict(transfers_retained_max=1_000, in_flight_max=100)
        values.update(config)
        config = CoreConfig(**values)
        archive = OutcomeArchive(1_000, config)
        self.core = SwitchCore(config, ledger.Ledger(ledger.LedgerConfig(
            accounts_max=100, transfers_retained_max=1 << 12, pending_max=1 << 10)),
            observer=archive.observe)
        self.shell = Shell(self.core, archive=archive.bind(self.core),
                           metrics=ServerMetrics(MetricsRegistry()), appended_sequence=0,
                           national_id_token=token)
        self.now_ns = T0
        self.records: list[tuple[int, bytes]] = []  # (now_ns, payload)
        self.durable = 0
        for event in (
            CurrencyAdded(request_id="kes", currency="KES", ledger_id=404,
                          settlement_model=SettlementModel.PREFUNDED_RTGS),
            *[ParticipantAdded(request_id=f"p{pid}", participant_id=pid, name=f"bank-{pid}")
              for pid in (PAYER, PAYEE, OTHER)],
            *[ParticipantAccountOpened(request_id=f"o{pid}", participant_id=pid, currency="KES")
              for pid in (PAYER, PAYEE, OTHER)],
            FundsDeposited(request_id="f1", participant_id=PAYER, currency="KES",
                           amount_minor=10_000),
        ):
            (answer,) = self.admin(event)
            assert answer.result is Result.OK, answer

    def tick(self, items, routes=None):
        routes_wanted = self.shell.lookups(items)
        if routes is None:
            routes = [ROUTE] * len(routes_wanted)
        tick = self.shell.decide(items, routes, self.now_ns)
        self.records += [(tick.now_ns, payload) for payload in tick.records]
        return tick

    def commit(self):
        self.durable = len(self.records)
        return self.shell.released(self.durable)

    def admin(self, event):
        tick = self.tick([(ITEM_ADMIN, 0, event, "operator")])
        (released,) = self.commit()
        assert released is tick
        return [answer for _to, answer in tick.replies]


def transfer(transfer_id: str, amount_minor: int = 100, payee: Party = ALIAS):
    return TransferRequest(transfer_id=transfer_id, payee=payee, amount_minor=amount_minor,
                           currency="KES", expires_at_ns=T0 + 5 * S)


def test_nothing_is_released_before_its_records_are_durable():
    rig = Rig()
    first = rig.tick([(ITEM_SUBMIT, PAYER, transfer("t1"), "conn-a")])
    second = rig.tick([(ITEM_SUBMIT, PAYER, transfer("t2"), "conn-a")])
    assert first.records and second.records
    assert rig.shell.released(first.sequence - 1) == []
    assert rig.shell.released(first.sequence) == [first]
    assert rig.shell.released(second.sequence) == [second]
    assert rig.shell.held_ticks == 0


def test_a_tick_without_records_waits_for_the_records_before_it():
    rig = Rig()
    writes = rig.tick([(ITEM_SUBMIT, PAYER, transfer("t1"), "conn-a")])
    query = rig.tick([(ITEM_STATUS, PAYER, StatusQuery(payer_participant_id=PAYER,
                                                       transfer_id="t1"), "future")])
    assert not query.records  # a status query changes nothing: not journaled
    assert rig.shell.released(writes.sequence - 1) == []  # its answer reveals t1's state
    assert rig.shell.released(writes.sequence) == [writes, query]


def test_a_payers_final_outcome_goes_to_the_connection_that_sent_the_transfer():
    rig = Rig()
    tick = rig.tick([(ITEM_SUBMIT, PAYER, transfer("t1"), "conn-a"),
                     (ITEM_SUBMIT, PAYER, transfer("t2"), "conn-b")])
    forwarded = [(to, type(message), origin) for to, message, origin in tick.sends]
    assert forwarded == [(PAYEE, CreditRequest, None), (PAYEE, CreditRequest, None)]
    answers = rig.tick([
        (ITEM_SUBMIT, PAYEE, PayeeAnswer(payer_participant_id=PAYER, transfer_id="t2",
                                         accepted=True), "payee-conn"),
        (ITEM_SUBMIT, PAYEE, PayeeAnswer(payer_participant_id=PAYER, transfer_id="t1",
                                         accepted=True), "payee-conn"),
    ])
    outcomes = [(message.transfer_id, to, origin) for to, message, origin in answers.sends
                if type(message) is TransferOutcome]
    assert outcomes == [("t2", PAYER, "conn-b"), ("t2", PAYEE, "payee-conn"),
                        ("t1", PAYER, "conn-a"), ("t1", PAYEE, "payee-conn")]


def test_an_invalid_operator_request_is_answered_and_never_journaled():
    rig = Rig()
    bad = msgspec.structs.replace(
        FundsDeposited(request_id="f2", participant_id=PAYER, currency="KES", amount_minor=1),
        amount_minor=0)
    tick = rig.tick([(ITEM_ADMIN, 0, bad, "operator")])
    assert tick.records == []
    ((to, answer),) = tick.replies
    assert to == "operator"
    assert type(answer) is AdminAnswer and answer.result is Result.VALIDATION_ERROR
    for _now_ns, payload in rig.records:  # every record replays
        codec.decode_tick(payload)


def test_a_national_id_is_journaled_and_forwarded_as_its_token_only():
    rig = Rig()
    raw = "1985123144"
    alias = Party(alias_type="NATIONAL_ID", alias_value=raw)
    tick = rig.tick([(ITEM_SUBMIT, PAYER, transfer("n1", payee=alias), "conn-a")])
    assert all(raw.encode() not in payload for payload in tick.records)
    (credit,) = [m for _to, m, _o in tick.sends if type(m) is CreditRequest]
    assert credit.payee_alias == Party(alias_type="NATIONAL_ID", alias_value=token(raw))
    # A malformed one that reaches the core (a resend of a held id) is recorded as no token.
    rig.tick([(ITEM_SUBMIT, PAYER, transfer("n1"), "conn-a")])
    resend = msgspec.structs.replace(transfer("n1", payee=alias),
                                     payee=Party(alias_type="NATIONAL_ID", alias_value="x"))
    again = rig.tick([(ITEM_SUBMIT, PAYER, resend, "conn-a")])
    assert b"x" not in b"".join(again.records).split(b"NATIONAL_ID")[1][:8]
    ((_to, refused, _origin),) = again.sends
    assert refused.result is Result.EXISTS_WITH_DIFFERENT_PARTY


def test_a_resend_of_a_held_id_is_not_routed_and_is_answered_from_the_record():
    rig = Rig()
    rig.tick([(ITEM_SUBMIT, PAYER, transfer("t1"), "conn-a")])
    items = [(ITEM_SUBMIT, PAYER, transfer("t1"), "conn-a"),
             (ITEM_SUBMIT, PAYER, transfer("t9"), "conn-a")]
    assert [alias for _p, alias, _u in rig.shell.lookups(items)] == [ALIAS]  # t9 only
    tick = rig.shell.decide(items, [Result.SERVICE_UNAVAILABLE], rig.now_ns)
    answers = {message.transfer_id if type(message) is not Refused else message.id:
               type(message) for _to, message, _origin in tick.sends}
    assert answers == {"t1": TransferOutcome, "t9": Refused}


def test_routes_must_be_the_answers_to_lookups():
    rig = Rig()
    items = [(ITEM_SUBMIT, PAYER, transfer("t1"), "conn-a")]
    rig.shell.lookups(items)
    with pytest.raises(AssertionError):
        rig.shell.decide(items, [], rig.now_ns)


def test_an_archived_refusal_is_read_by_its_payer_only_if_it_never_reached_the_payee():
    rig = Rig(transfers_retained_max=4, in_flight_max=1)
    # t0 is refused at admission (more than the payer holds): never sent to the payee.
    rig.tick([(ITEM_SUBMIT, PAYER, transfer("t0", amount_minor=10**6), "conn-a")])
    rig.commit()
    rig.now_ns += 6 * S  # past t0's expiry: the core may drop it from its window
    for index in range(1, 6):
        rig.tick([(ITEM_SUBMIT, PAYER, TransferRequest(
            transfer_id=f"f{index}", payee=ALIAS, amount_minor=10**6, currency="KES",
            expires_at_ns=rig.now_ns + S), "conn-a")])
        rig.now_ns += 2 * S
    assert rig.core.transfer_record(PAYER, "t0") is None  # dropped; archived
    asks = {}
    for asker in (PAYER, PAYEE, OTHER):
        tick = rig.tick([(ITEM_STATUS, asker, StatusQuery(payer_participant_id=PAYER,
                                                          transfer_id="t0"), asker)])
        ((_to, answer),) = tick.replies
        asks[asker] = answer
    assert type(asks[PAYER]) is TransferOutcome
    assert asks[PAYER].state is TransferState.REJECTED
    assert asks[PAYER].result is Result.PAYER_INSUFFICIENT_LIQUIDITY
    for asker in (PAYEE, OTHER):
        assert type(asks[asker]) is Refused and asks[asker].result is Result.TRANSFER_NOT_FOUND


def test_recovery_hands_out_timers_and_the_resends_to_hold():
    rig = Rig()
    rig.tick([(ITEM_SUBMIT, PAYER, transfer("t1"), "conn-a")])
    rig.commit()
    archive = OutcomeArchive(10, rig.core.config)
    replayed = SwitchCore(rig.core.config, ledger.Ledger(rig.core.ledger.config),
                          observer=archive.observe)
    archive.bind(replayed)
    replayed.replay((now_ns, event) for now_ns, payload in rig.records
                    for event in codec.decode_tick(payload))
    shell = Shell(replayed, archive=archive,
                  metrics=ServerMetrics(MetricsRegistry()), appended_sequence=len(rig.records),
                  national_id_token=token)
    timers, holds = shell.recovery()
    assert [timer.timer_id for timer in timers] == list(replayed.live_timers())
    assert [(to, type(message)) for to, message in holds] == [(PAYEE, CreditRequest)]
    fired = shell.decide([(ITEM_TIMER, 0, TimerFired(timer_id=timers[0].timer_id), None)],
                         [], timers[0].deadline_ns)
    outcomes = {(to, message.state) for to, message, _o in fired.sends}
    assert outcomes == {(PAYER, TransferState.EXPIRED), (PAYEE, TransferState.EXPIRED)}


def test_the_journal_holds_every_stepped_event_but_status_queries():
    rig = Rig()
    status = StatusQuery(payer_participant_id=PAYER, transfer_id="t1")
    tick = rig.tick([(ITEM_SUBMIT, PAYER, transfer("t1"), "conn-a"),
                     (ITEM_STATUS, PAYER, status, "future"),
                     (ITEM_SUBMIT, PAYER, status, "conn-a")])
    events = [event for payload in tick.records for event in codec.decode_tick(payload)]
    assert [type(event) for event in events] == [TransferRequested]


def test_the_archive_is_rebuilt_by_replaying_the_journal():
    """The archive is the core's observer: a replay of the journal (a restart) gives the
    same archive, so an old transfer's outcome is still answered after a crash."""
    rig = Rig(transfers_retained_max=4, in_flight_max=1)
    for index in range(8):
        rig.tick([(ITEM_SUBMIT, PAYER, TransferRequest(
            transfer_id=f"t{index}", payee=ALIAS, amount_minor=10**6, currency="KES",
            expires_at_ns=rig.now_ns + S), "conn-a")])
        rig.now_ns += 2 * S
    assert len(rig.shell.archive) > 0
    archive = OutcomeArchive(1_000, rig.core.config)
    replayed = SwitchCore(rig.core.config, ledger.Ledger(rig.core.ledger.config),
                          observer=archive.observe)
    archive.bind(replayed)
    replayed.replay((now_ns, event) for now_ns, payload in rig.records
                    for event in codec.decode_tick(payload))
    assert archive.snapshot() == rig.shell.archive.snapshot()
    restored = OutcomeArchive(1_000, rig.core.config).restore(archive.snapshot())
    assert restored.snapshot() == archive.snapshot()
    assert restored.get(PAYER, "t0", PAYER) == rig.shell.archive.get(PAYER, "t0", PAYER)


def test_a_routed_transfer_takes_its_route_without_a_lookup_and_is_idempotent():
    """G2P rows (ITEM_ROUTED): the mapper decided the payee, so the shell asks no lookup,
    records the alias as given (already an identity token) and steps the core with the
    route; a resend under the same id is answered from what was recorded."""
    from switch.server.shell import ITEM_ROUTED

    rig = Rig()
    payee = Party(alias_type="NATIONAL_ID", alias_value="ab" * 32)
    message = transfer("g2p.1.1.0", payee=payee)
    items = [(ITEM_ROUTED, PAYER, message, ("engine", (PAYEE, "acc-9")))]
    assert rig.shell.lookups(items) == []
    tick = rig.tick(items, routes=[])
    (sent,) = [message for to, message, _origin in tick.sends if to == PAYEE]
    assert type(sent) is CreditRequest
    assert (sent.payee_account_ref, sent.payee_alias) == ("acc-9", payee)
    assert tick.origins[id("engine")][1] == 1
    (record,) = tick.records
    (event,) = codec.decode_tick(record)  # the journal reads it back
    assert type(event) is TransferRequested and event.payee_participant_id == PAYEE
    rig.commit()
    again = rig.tick([(ITEM_ROUTED, PAYER, message, ("engine", (PAYEE, "acc-9")))], routes=[])
    (answer,) = [message for to, message, _origin in again.sends if to == PAYER]
    assert type(answer) is TransferOutcome and answer.state is TransferState.FORWARDED
    assert rig.core.in_flight_count == 1


@pytest.mark.parametrize("routed", [False, True], ids=["looked-up", "routed"])
def test_a_resend_of_a_transfer_the_core_dropped_before_its_expiry_is_never_paid_twice(
        routed):
    """With a durable history (finals_kept_until_expiry off) the core drops finals long
    before their expiry. A resend of one — through a door (lookup) or from the G2P engine
    (routed) — is answered from the archive as the resend it is, never stepped into the
    core as a new transfer (found: routed resends reached the core)."""
    from switch.server.shell import ITEM_ROUTED

    rig = Rig(transfers_retained_max=4, in_flight_max=2, finals_kept_until_expiry=False)

    def item(transfer_id: str, amount_minor: int = 100):
        message = transfer(transfer_id, amount_minor)
        if routed:
            return (ITEM_ROUTED, PAYER, message, ("engine", ROUTE))
        return (ITEM_SUBMIT, PAYER, message, "door")

    def pay(transfer_id: str):
        rig.tick([item(transfer_id)])
        rig.tick([(ITEM_SUBMIT, PAYEE, PayeeAnswer(payer_participant_id=PAYER,
                                                     transfer_id=transfer_id, accepted=True),
                   "payee")])
        rig.commit()

    for transfer_id in ("first", "t1", "t2", "t3", "t4"):
        pay(transfer_id)
    assert rig.core.transfer_record(PAYER, "first") is None  # dropped, not expired
    assert rig.shell.archive.final(PAYER, "first") is not None
    def accounts():
        ids = [rig.core.account_id(pid, "KES") for pid in (PAYER, PAYEE)]
        return rig.core.ledger.lookup_accounts(ids)

    balance = accounts()
    records = len(rig.records)
    again = rig.tick([item("first")])
    assert again.records == [] and len(rig.records) == records  # nothing new journaled
    (answer,) = [message for to, message, _origin in again.sends if to == PAYER]
    assert type(answer) is TransferOutcome and answer.state is TransferState.COMMITTED
    assert not [m for to, m, _o in again.sends if to == PAYEE]  # no second credit request
    assert accounts() == balance
    # The same id with another amount is refused as a different transfer, not paid.
    changed = rig.tick([item("first", 999)])
    (refusal,) = [message for to, message, _origin in changed.sends if to == PAYER]
    assert refusal.result is Result.EXISTS_WITH_DIFFERENT_AMOUNT, refusal
    assert changed.records == []
