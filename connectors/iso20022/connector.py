"""The ISO 20022 connector: banks that speak pacs, camt, pain and admi messages join the
switch through the same gateway and core as every other participant.

`Iso20022Connector(gateway, config)`:
- attaches a sink for each configured bank (Gateway docstring): the core's messages for it
  are written as ISO messages (`outbound.Writer`) and delivered by the transport
  (`transport.Delivery`): CreditRequest -> pacs.008 (or pacs.004 for a return),
  TransferOutcome -> pacs.002 (+ camt.054 / camt.052 where the bank asked),
  Refused -> pacs.002 RJCT or pain.014 RJCT, RequestToPayNotice -> pain.013,
  RequestToPayOutcome -> pain.014, ErrorAnswer -> admi.002;
- takes the banks' messages (`receive`): validated and mapped by `inbound`, then submitted
  to the gateway; a message that fails is answered with an admi.002 and nothing is
  submitted. Status requests (pacs.028) are asked of the gateway and answered by pacs.002;
  recalls (camt.056) are forwarded to the payee bank and its answer (camt.029) back to the
  payer bank: a recall moves no money (the payee bank's pacs.004 does).

Exactly once by BizMsgIdr: a bank's message seen again (same sender, same BizMsgIdr, same
content as read) is acknowledged without reaching the switch again; the same BizMsgIdr with
other content is refused (admi.002 DUPL). Outbound ids are deterministic (outbound.py).
What must survive a restart (passthroughs, references, recalls, the BizMsgIdr window,
camt.052 sequences) is kept in the connector's store (state.py), in the order its
docstring gives; every message owed to a bank is kept in the outbox (outbox.py) from the
moment it is written until the bank acknowledges it, and goes out only once its records
are on disk, so a restart delivers what was owed, in order, exactly once by BizMsgIdr.

It must never decide an outcome, never take a participant id from a message (only from the
transport's authentication: member ids in a message must be the sender's), and never
submit anything from a message that failed validation.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
import uuid
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from connectors.http.jws import Signer, VerifyKey
from connectors.iso20022 import limits, xml
from connectors.iso20022.codes import reason_for
from connectors.iso20022.common import Invalid, Members
from connectors.iso20022.inbound import (
    AskStatus,
    Context,
    OriginalRefs,
    Recall,
    RecallAnswer,
    Submit,
    decode,
    digest,
    header_id,
    open_envelope,
    returned_currency,
    split_body,
)
from connectors.iso20022.outbound import (
    Writer,
    Written,
    batch,
    iso_id,
    possible_duplicate,
    transfer_status,
)
from connectors.iso20022.outbox import Outbox, Owed
from connectors.iso20022.state import RecallCase, State, StateLog, StateUnavailable
from connectors.iso20022.transport import Delivery, DeliveryPolicy, Inbound
from switch.core import limits as core_limits
from switch.core.messages import (
    CreditRequest,
    ErrorAnswer,
    Refused,
    RequestToPay,
    RequestToPayNotice,
    RequestToPayOutcome,
    RequestType,
    ReturnRequest,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import RequestToPayState, Result, TransferState

log = logging.getLogger("ponte.iso20022")

Notification = Literal["camt.054", "camt.052"]
MemberId = Annotated[str, Meta(min_length=1, max_length=35, pattern=r"^[A-Za-z0-9._:/-]+$")]


class BankConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One bank that speaks ISO 20022: its participant, its member id(s), where the switch
    delivers its messages, how it signs, and which notifications it asked for."""

    participant_id: Annotated[int, Meta(ge=1, le=core_limits.PARTICIPANT_ID_MAX)]
    member_id: MemberId  # ClrSysMmbId/MmbId or BIC, as in its AppHdr/Fr
    other_member_ids: tuple[MemberId, ...] = ()  # e.g. its BIC besides its member id
    endpoint_url: str = ""  # https://bank.example/iso20022 (no endpoint: nothing delivered)
    public_key_pem: Annotated[str, Meta(max_length=8192)] = ""  # JWS key of its bodies
    signature_required: bool = False
    notifications: tuple[Notification, ...] = ()
    batch_max: Annotated[int, Meta(ge=1, le=limits.BATCH_MESSAGES_MAX)] = (
        limits.DELIVERY_BATCH_MAX_DEFAULT)
    report_interval_ms: Annotated[int, Meta(ge=1_000, le=86_400_000)] = (
        limits.REPORT_INTERVAL_MS_DEFAULT)


class Iso20022Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[iso20022]` table of the server's configuration."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8443
    switch_member_id: MemberId = "PONTE"
    banks: tuple[BankConfig, ...] = ()
    tls_cert: str = ""  # PEM chain: serve HTTPS
    tls_key: str = ""
    tls_client_ca: str = ""  # PEM CA bundle: ask for client certificates (mTLS)
    client_cert: str = ""  # the switch's certificate towards banks' endpoints (mTLS)
    client_key: str = ""
    endpoint_ca: str = ""  # CA bundle that banks' endpoints are verified against
    signing_key_path: str = ""  # the switch signs what it delivers when set
    signing_algorithm: Literal["ES256", "RS256", "PS256", "EdDSA"] = "ES256"
    signing_kid: str = ""
    transfer_expiry_ms: Annotated[int, Meta(ge=1_000, le=core_limits.EXPIRY_MS_MAX_CEILING)] = (
        limits.TRANSFER_EXPIRY_MS_DEFAULT)
    request_to_pay_expiry_ms: Annotated[
        int, Meta(ge=1_000, le=core_limits.EXPIRY_MS_MAX_CEILING)] = (
        limits.REQUEST_TO_PAY_EXPIRY_MS_DEFAULT)
    # Check each written message against its XSD before it leaves (tests always do; it
    # costs a parse and a validation per message, see docs/iso20022.md).
    validate_outbound: bool = False
    delivery: DeliveryPolicy = DeliveryPolicy()

    def __post_init__(self) -> None:
        seen_ids: set[str] = {self.switch_member_id}
        participants: set[int] = set()
        for bank in self.banks:
            if bank.participant_id in participants:
                raise ValueError(f"bank {bank.participant_id} is listed twice")
            participants.add(bank.participant_id)
            for member_id in (bank.member_id, *bank.other_member_ids):
                if member_id in seen_ids:
                    raise ValueError(f"member id {member_id} is used twice")
                seen_ids.add(member_id)


class _Taking:
    """A message one request is taking: a resend of it in another request waits for
    `future` (True: taken and durable) before it is acknowledged."""

    __slots__ = ("digest", "future")

    def __init__(self, digest: bytes, loop) -> None:
        self.digest = digest
        self.future = loop.create_future()


class _Durable:
    """The gateway's Origin for the messages of one request: done when all are durable."""

    __slots__ = ("future", "left")

    def __init__(self, loop) -> None:
        self.future = loop.create_future()
        self.left = 0

    def sequenced(self, count: int) -> None:
        self.left -= count
        if self.left <= 0 and not self.future.done():
            self.future.set_result(None)


class BankSink:
    """The gateway Sink of one bank."""

    __slots__ = ("connector", "participant_id")

    def __init__(self, connector: Iso20022Connector, participant_id: int) -> None:
        self.connector = connector
        self.participant_id = participant_id

    def deliver(self, message) -> None:
        self.connector.deliver(self.participant_id, message)

    def flush(self) -> None:
        self.connector.flush()

    def close(self, reason: str) -> None:
        """Nothing to end: every request carries its own credentials."""


class Iso20022Connector:
    """`state_log`, `outbox_log`: where the connector keeps what must survive a restart
    (state.py) and what it owes banks (outbox.py); the composition root gives it the
    switch's (switch/store/iso20022_state.py). None: memory only (the mapping's own tests,
    the bench's stages)."""

    def __init__(self, gateway, config: Iso20022Config = Iso20022Config(),
                 state_log: StateLog | None = None, outbox_log: StateLog | None = None
                 ) -> None:
        self.gateway = gateway
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.banks = {bank.participant_id: bank for bank in config.banks}
        self.members = Members(config.switch_member_id, {
            bank.participant_id: (bank.member_id, *bank.other_member_ids)
            for bank in config.banks})
        self.writer = Writer(self.members)
        self.state = State(state_log, on_synced=self._synced)
        self.outbox = Outbox(outbox_log, on_synced=self._synced)
        # (participant, BizMsgIdr) of messages taken but not yet durable: a resend waits.
        self._taking: dict[tuple[int, str], asyncio.Future] = {}
        self._report_timers: dict[int, asyncio.TimerHandle] = {}  # per bank
        self._tasks: set[asyncio.Task] = set()
        self.rejected_total = 0  # messages answered with an admi.002
        signer = None
        if config.signing_key_path:
            with open(config.signing_key_path, "rb") as file:
                signer = Signer(file.read(), config.signing_algorithm, config.signing_kid)
        client_ssl = None
        if config.endpoint_ca or config.client_cert:
            client_ssl = ssl_module.create_default_context(cafile=config.endpoint_ca or None)
            if config.client_cert:
                client_ssl.load_cert_chain(config.client_cert, config.client_key or None)
        self.delivery = Delivery(
            {bank.participant_id: (bank.endpoint_url, bank.batch_max) for bank in config.banks},
            policy=config.delivery, signer=signer, client_ssl=client_ssl,
            durable=self._durable, acknowledged=self._acknowledged)
        keys = {bank.participant_id: VerifyKey(bank.public_key_pem.encode())
                for bank in config.banks if bank.public_key_pem}
        self.inbound = Inbound(
            gateway, self.receive, keys=keys,
            signature_required=frozenset(bank.participant_id for bank in config.banks
                                         if bank.signature_required),
            banks=frozenset(self.banks))
        self.sinks = {participant_id: BankSink(self, participant_id)
                      for participant_id in self.banks}

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        xml.load_all()
        # Before the sinks attach: the credits the switch re-sends after a restart go out
        # with what their payer banks' messages carried.
        await self.state.load(time.time_ns())
        await self.outbox.load()
        self._restore()
        for participant_id, sink in self.sinks.items():
            self.gateway.attach(participant_id, sink)
        server_ssl = None
        config = self.config
        if config.tls_cert:
            server_ssl = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
            server_ssl.load_cert_chain(config.tls_cert, config.tls_key or None)
            if config.tls_client_ca:
                server_ssl.load_verify_locations(config.tls_client_ca)
                server_ssl.verify_mode = ssl_module.CERT_OPTIONAL
        await self.inbound.start(config.host, config.port, ssl=server_ssl)
        for bank in config.banks:
            if "camt.052" in bank.notifications:
                self._arm_report(bank)
        log.info("iso20022.listening host=%s port=%d banks=%d", config.host, self.port,
                 len(self.banks))

    @property
    def port(self) -> int:
        return self.inbound.port

    async def close(self, grace_ms: int = 5_000) -> None:
        for timer in self._report_timers.values():
            timer.cancel()
        await self.inbound.close(grace_ms)
        for task in list(self._tasks):
            task.cancel()
        for participant_id, sink in self.sinks.items():
            self.gateway.detach(participant_id, sink)
        await self.delivery.close(grace_ms)
        await self.state.close()
        await self.outbox.close()

    def register_metrics(self, registry) -> None:
        stats = self.delivery.stats
        for field in ("delivered_total", "requests_total", "retried_total", "stalled_total",
                      "refused_total", "restored_total", "dropped_queue_full_total",
                      "dropped_no_endpoint_total"):
            registry.gauge(f"ponte_iso20022_delivery_{field}",
                           f"ISO 20022 delivery to banks: {field.replace('_', ' ')}.",
                           lambda field=field: getattr(stats, field), kind="counter")
        registry.gauge("ponte_iso20022_rejected_total", "Bank messages answered with admi.002.",
                       lambda: self.rejected_total, kind="counter")
        registry.gauge("ponte_iso20022_outbox_owed",
                       "Messages owed to ISO 20022 banks: written, not yet acknowledged.",
                       lambda: self.outbox.owed)
        registry.gauge("ponte_iso20022_outbox_resent_skipped_total",
                       "Messages written again (after a restart) while the first was owed.",
                       lambda: self.outbox.resent_skipped_total, kind="counter")
        registry.gauge("ponte_iso20022_outbox_rewrites_total",
                       "Times the ISO 20022 outbox was rewritten from what is owed.",
                       lambda: self.outbox.log.rewrites, kind="counter")
        registry.gauge("ponte_iso20022_state_records_written_total",
                       "Records the ISO 20022 connector wrote to its store.",
                       lambda: self.state.records_written, kind="counter")
        registry.gauge("ponte_iso20022_state_rewrites_total",
                       "Times the ISO 20022 connector rewrote its store from memory.",
                       lambda: self.state.rewrites, kind="counter")

    # -- out: the core's messages for a bank -------------------------------------------

    def _send(self, written: Written) -> None:
        if self.config.validate_outbound:
            problem = _outbound_problem(written)
            if problem is not None:  # a bug of ours: never send a message that is not valid
                log.error("iso20022.outbound_invalid definition=%s problem=%s",
                          written.definition, problem)
                return
        if not self.delivery.room(written.participant_id):
            return
        owed = self.outbox.add(written)
        if owed is None:
            return  # owed already (written again after a restart): the first goes
        owed.after = self.state.log.appended  # its references go to disk with it
        self.delivery.send(owed)

    def flush(self) -> None:
        """Start writing both logs and sending what is durable: once per released batch."""
        self.state.kick()
        self.outbox.log.kick()
        self.delivery.flush()

    def _durable(self, owed: Owed) -> bool:
        return owed.index <= self.outbox.log.synced and owed.after <= self.state.log.synced

    def _synced(self) -> None:
        self.delivery.pump()

    def _acknowledged(self, participant_id: int, sequence: int) -> None:
        self.outbox.done(participant_id, sequence)
        self.outbox.log.kick()

    def _restore(self) -> None:
        """What was owed when the switch stopped goes first, in order; what is owed to a
        bank no longer configured (or without an endpoint) is dropped, loudly."""
        for participant_id, lane in self.outbox.lanes.items():
            if not lane:
                continue
            if participant_id in self.delivery.lanes:
                for owed in lane.values():
                    owed.written.body = possible_duplicate(owed.written.body)
                    self.delivery.restore(owed)
            else:
                log.warning("iso20022.outbox_dropped participant_id=%d messages=%d (no "
                            "endpoint configured for it)", participant_id, len(lane))
                self.outbox.done(participant_id, next(reversed(lane)))
        self.outbox.log.kick()
        self.delivery.flush()

    def deliver(self, participant_id: int, message) -> None:
        now_ns = time.time_ns()
        writer = self.writer
        state = self.state
        kind = type(message)
        if kind is CreditRequest:
            payer = message.payer_participant_id
            transfer_id = message.transfer_id
            key = (payer, transfer_id)
            written = writer.credit(message, participant_id, now_ns, state.kept(key))
            state.remember_sent(written.biz_msg_id, payer, transfer_id)
            tx_id = iso_id(transfer_id, payer)
            if tx_id != transfer_id:
                state.remember_sent(tx_id, payer, transfer_id)
            state.credit(key, "pacs.004" if message.return_of is not None else "pacs.008",
                         now_ns)
            self._send(written)
        elif kind is TransferOutcome:
            self._outcome(participant_id, message, now_ns)
        elif kind is Refused:
            self._refused(participant_id, message, now_ns)
        elif kind is RequestToPayNotice:
            written = writer.request_to_pay(participant_id, message, now_ns)
            state.remember_sent(written.biz_msg_id, message.payee_participant_id,
                                message.request_id)
            self._send(written)
        elif kind is RequestToPayOutcome:
            if participant_id == message.payee_participant_id:
                key = ("rtp", participant_id, message.request_id)
                passthrough = state.kept(key) if message.state is RequestToPayState.OPEN \
                    else state.forget(key)
                self._send(writer.request_to_pay_status(participant_id, message, passthrough,
                                                        now_ns))
        elif kind is ErrorAnswer:
            self._send(self._result_reject(participant_id, "", Result(message.result),
                                           message.detail or "the switch could not act on "
                                           "a message", now_ns))
        # ResolveAnswer: ISO banks do not resolve through the connector.

    def _outcome(self, participant_id: int, outcome: TransferOutcome, now_ns: int) -> None:
        key = (outcome.payer_participant_id, outcome.transfer_id)
        final = outcome.state in (TransferState.COMMITTED, TransferState.REJECTED,
                                  TransferState.EXPIRED)
        state = self.state
        if participant_id == outcome.payer_participant_id:
            passthrough = state.forget(key) if final else state.kept(key)
            kind = passthrough.kind if passthrough is not None else "pacs.008"
            self._send(self.writer.outcome(participant_id, outcome, now_ns, passthrough, kind))
        else:
            kind = state.credit_kind(key, final)
            self._send(self.writer.outcome(participant_id, outcome, now_ns, None, kind))
        if outcome.state is TransferState.COMMITTED:
            bank = self.banks.get(participant_id)
            if bank is not None and bank.notifications:
                if "camt.054" in bank.notifications:
                    self._send(self.writer.notification(participant_id, outcome, now_ns))
                if "camt.052" in bank.notifications:
                    if not state.report_entry(participant_id, outcome):
                        self._flush_report(participant_id, outcome.currency)  # it is full
                        state.report_entry(participant_id, outcome)

    def _refused(self, participant_id: int, refused: Refused, now_ns: int) -> None:
        writer = self.writer
        if refused.request_type is RequestType.REQUEST_TO_PAY:
            key = ("rtp", participant_id, refused.id)
            outcome = RequestToPayOutcome(
                payee_participant_id=participant_id, request_id=refused.id,
                state=RequestToPayState.REJECTED, result=refused.result)
            self._send(writer.request_to_pay_status(participant_id, outcome,
                                                    self.state.forget(key), now_ns))
            return
        if refused.request_type in (RequestType.TRANSFER, RequestType.RETURN):
            passthrough = self.state.forget((participant_id, refused.id))
            if passthrough is not None:
                refs, related = passthrough.refs, passthrough.related
            else:
                refs = OriginalRefs(iso_id(refused.id, participant_id), tx_id=iso_id(
                    refused.id, participant_id))
                related = None
            self._send(writer.refusal(participant_id, refs, refused.result, now_ns, related))
            return
        self._send(self._result_reject(participant_id, refused.id, refused.result,
                                       f"refused: {refused.request_type.value}", now_ns))

    def _result_reject(self, participant_id: int, reference: str, result: Result,
                       detail: str, now_ns: int) -> Written:
        """An admi.002 for a result of the switch: its ISO code (the one table) as the
        RjctgPtyRsn, like every admi.002, and Ponte's result in words."""
        return self.writer.reject(participant_id, reference, reason_for(result),
                                  f"PONTE {int(result)} {result.name}: {detail}", "", now_ns,
                                  _random_id())

    def _arm_report(self, bank: BankConfig) -> None:
        def fire() -> None:
            for (participant_id, currency) in list(self.state.reports):
                if participant_id == bank.participant_id:
                    self._flush_report(participant_id, currency)
            self.flush()
            self._arm_report(bank)
        self._report_timers[bank.participant_id] = self.loop.call_later(
            bank.report_interval_ms / 1000, fire)

    def _flush_report(self, participant_id: int, currency: str) -> None:
        taken = self.state.take_report(participant_id, currency)
        if taken is None:
            return
        entries, sequence = taken
        self._send(self.writer.report(participant_id, currency, entries, sequence,
                                      time.time_ns()))

    # -- in: a bank's body -----------------------------------------------------------------

    async def receive(self, participant_id: int, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, XML answer) for a bank's body: 202 and nothing when every message
        was taken (once durable), else 400 with an admi.002 per message not taken (a batch's
        valid messages are still taken).

        Durability, in this order (state.py): what a message leaves in the store (its
        passthrough) is synced before it is submitted; its BizMsgIdr is recorded once the
        journal holds it; a resend of a message still being taken waits for it."""
        now_ns = time.time_ns()
        members = self.members
        member = members.member(participant_id)
        rejects: list[Written] = []
        try:
            elements = split_body(body)
        except Invalid as error:
            rejects.append(self._reject(participant_id, "", error, now_ns))
            return 400, _answer(rejects)
        state = self.state
        context = Context(participant_id, member, now_ns, members,
                          self.config.transfer_expiry_ms, self.config.request_to_pay_expiry_ms,
                          state.sent.get)
        seen = state.window(participant_id)
        taking = self._taking
        taken = []  # (envelope, action, digest)
        waits = []  # (envelope, _Taking) resends of messages another request is taking
        in_body: set[str] = set()
        for element in elements:
            try:
                envelope = open_envelope(element, member, members, now_ns)
                biz_msg_id = envelope.biz_msg_id
                other = taking.get((participant_id, biz_msg_id))
                used = biz_msg_id in seen or biz_msg_id in in_body or other is not None
                try:
                    action = decode(envelope, context)
                except Invalid:
                    if used:  # what it pointed at may be gone since: never taken again
                        raise _used() from None
                    raise
                read = digest(action)
                if used:
                    if biz_msg_id in in_body:
                        raise _used()
                    if other is not None and other.digest == read:
                        waits.append((envelope, other))
                        continue
                    if seen.get(biz_msg_id) == read:
                        continue  # a resend of a message taken before: acknowledged again
                    raise _used()
                if type(action) is RecallAnswer:
                    self._check_recall_answer(participant_id, action)
            except Invalid as error:
                rejects.append(self._reject(participant_id, header_id(element), error, now_ns))
                continue
            in_body.add(biz_msg_id)
            taken.append((envelope, action, read))
        attempts = {}
        for envelope, _action, read in taken:
            attempt = attempts[envelope.biz_msg_id] = _Taking(read, self.loop)
            taking[(participant_id, envelope.biz_msg_id)] = attempt
        done: list[tuple[str, bytes]] = []  # (BizMsgIdr, digest) taken
        try:
            busy = await self._take(participant_id, taken, rejects, done, now_ns)
        finally:
            for biz_msg_id, attempt in attempts.items():
                del taking[(participant_id, biz_msg_id)]
                if not attempt.future.done():  # those taken were told True already
                    attempt.future.set_result(False)
        for envelope, other in waits:
            if not await other.future:
                rejects.append(self._reject(participant_id, envelope.biz_msg_id, Invalid(
                    "MS03", "not taken: send it again later"), now_ns))
        if done:
            for biz_msg_id, read in done:
                state.log_seen(participant_id, biz_msg_id, read)
            try:
                await state.sync()
            except StateUnavailable as error:  # taken all the same: the journal has them
                log.error("iso20022.state_unavailable error=%s", error)
        if rejects:
            self.rejected_total += len(rejects)
            if busy and len(rejects) == len(elements):
                return 503, _answer(rejects)
            return 400 if len(rejects) == len(elements) else 202, _answer(rejects)
        return 202, b""

    async def _take(self, participant_id: int, taken: list, rejects: list[Written],
                    done: list[tuple[str, bytes]], now_ns: int) -> bool:
        """Submit or act on each taken message; True if the switch was busy. `done` gets
        those taken, once durable (their _Taking told True)."""
        state = self.state
        for item in [item for item in taken if type(item[1]) is Submit
                     and type(item[1].message) is ReturnRequest]:
            problem = await self._return_currency_problem(participant_id, item[0],
                                                          item[1].message)
            if problem is not None:
                taken.remove(item)
                rejects.append(self._reject(participant_id, item[0].biz_msg_id, problem,
                                            now_ns))
        kept = False
        for envelope, action, _read in taken:
            if type(action) is Submit and action.passthrough is not None:
                action.passthrough.related = envelope.related()
                state.keep(_passthrough_key(participant_id, action.message),
                           action.passthrough, now_ns)
                kept = True
        if kept or any(type(action) is Submit for _envelope, action, _read in taken):
            try:
                # Before submitting: the passthroughs, and every reference appended before
                # (the MsgId of a credit a pacs.002 answers, say) are on disk.
                await state.sync()
            except StateUnavailable as error:
                log.error("iso20022.state_unavailable error=%s", error)
                for envelope, _action, _read in taken:
                    rejects.append(self._reject(participant_id, envelope.biz_msg_id, Invalid(
                        "MS03", "not taken: the switch cannot record it now; send it "
                                "again later"), now_ns))
                return True
        busy = False
        durable = _Durable(self.loop)
        gateway = self.gateway
        seen = state.see
        for envelope, action, read in taken:
            kind = type(action)
            if kind is Submit:
                message = action.message
                durable.left += 1
                result = gateway.submit(participant_id, message, durable)
                if result is not Result.OK:
                    durable.left -= 1
                    if action.passthrough is not None:
                        state.forget(_passthrough_key(participant_id, message))
                    busy = busy or result in (Result.SERVER_BUSY, Result.SERVICE_UNAVAILABLE)
                    rejects.append(self._reject(participant_id, envelope.biz_msg_id, Invalid(
                        "MS03", f"not taken: {result.name}; send it again later"), now_ns))
                    continue
            elif kind is AskStatus:
                self._spawn(self._answer_status(participant_id, action, envelope.related()))
            elif kind is Recall:
                self._spawn(self._forward_recall(action))
            elif kind is RecallAnswer:
                self._forward_recall_answer(participant_id, action, now_ns)
            seen(participant_id, envelope.biz_msg_id, read)
            done.append((envelope.biz_msg_id, read))
        if durable.left > 0:
            await durable.future
        self.flush()
        for biz_msg_id, _read in done:
            attempt = self._taking.get((participant_id, biz_msg_id))
            if attempt is not None and not attempt.future.done():
                attempt.future.set_result(True)
        return busy

    async def _return_currency_problem(self, participant_id: int, envelope,
                                       request: ReturnRequest) -> Invalid | None:
        """AM03 for a pacs.004 in another currency than its original's. The core's
        ReturnRequest has no currency (a return moves the original's), so unchecked a
        return "in JPY" of a BRL transfer moved BRL, its amount read with JPY's decimals.
        Asked of the switch like the mobile-money connector's reversal; an original the
        bank is no party to is left to the core, which refuses it."""
        currency = returned_currency(envelope)
        original = request.original
        answer = await self.gateway.status(participant_id, StatusQuery(
            payer_participant_id=original.payer_participant_id,
            transfer_id=original.transfer_id))
        if type(answer) is ErrorAnswer:
            return Invalid("MS03", f"not taken: {Result(answer.result).name}; send it "
                                   "again later")
        if type(answer) is TransferOutcome and answer.currency not in ("", currency):
            return Invalid(reason_for(Result.CURRENCY_NOT_SUPPORTED),
                           f"RtrdIntrBkSttlmAmt is in {currency}, the returned transfer "
                           f"in {answer.currency}", "TxInf/RtrdIntrBkSttlmAmt")
        return None

    def _reject(self, participant_id: int, reference: str, error: Invalid, now_ns: int
                ) -> Written:
        log.debug("iso20022.rejected participant_id=%d code=%s detail=%s", participant_id,
                  error.code, error.detail)
        return self.writer.reject(participant_id, reference, error.code, error.detail,
                                  error.location, now_ns, _random_id())

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_status(self, participant_id: int, ask: AskStatus, related) -> None:
        answer = await self.gateway.status(participant_id, ask.query)
        now_ns = time.time_ns()
        refs = ask.refs
        if type(answer) is TransferOutcome:
            # Quote what the bank asked about, as it named it.
            status, code, additional = transfer_status(answer)
            written = self.writer.status(participant_id, _random_id(), refs, status, code,
                                         additional, now_ns, related)
        else:
            result = answer.result
            written = self.writer.refusal(participant_id, refs, result, now_ns, related)
        self._send(written)
        self.flush()

    async def _forward_recall(self, recall: Recall) -> None:
        payer = recall.payer_participant_id
        answer = await self.gateway.status(payer, StatusQuery(
            payer_participant_id=payer, transfer_id=recall.transfer_id))
        now_ns = time.time_ns()
        refusal = ""
        if type(answer) is not TransferOutcome:
            refusal = "NOOR"
        elif answer.state is not TransferState.COMMITTED:
            refusal = "NOOR"
        elif answer.payee_participant_id not in self.banks:
            refusal = "AGNT"
        if refusal:
            detail = ("no settled transfer of yours under that reference" if refusal == "NOOR"
                      else "the payee participant does not take recalls through ISO 20022")
            self._send(self.writer.recall_answer(payer, recall.case_id, recall.refs, "RJCR",
                                                 "RJCR", refusal, detail, now_ns, "refused"))
            self.flush()
            return
        payee = answer.payee_participant_id
        written = self.writer.recall(payee, payer, recall.transfer_id, recall.case_id,
                                     answer.amount_minor, answer.currency, recall.reason_code,
                                     recall.additional, now_ns)
        self.state.open_recall(written.biz_msg_id, RecallCase(payer, payee, recall.case_id,
                                                              recall.refs))
        try:
            await self.state.sync()  # the payee bank's camt.029 must find it, restart or not
        except StateUnavailable as error:
            log.error("iso20022.state_unavailable error=%s", error)
            self.state.close_recall(written.biz_msg_id)
            return
        self._send(written)
        self.flush()

    def _check_recall_answer(self, participant_id: int, answer: RecallAnswer) -> None:
        case = self.state.recalls.get(answer.case_id)
        if case is None or case.payee_id != participant_id:
            raise Invalid("NOOR", "no recall of yours is open under that case id",
                          "RslvdCase/Id")

    def _forward_recall_answer(self, participant_id: int, answer: RecallAnswer,
                               now_ns: int) -> None:
        case = self.state.recalls.get(answer.case_id)
        if case is None:
            return  # answered meanwhile by another request of the same bank
        if answer.confirmation != "PDCR" and answer.status != "PDCR":
            self.state.close_recall(answer.case_id)
        self._send(self.writer.recall_answer(
            case.requester_id, case.case_id, case.refs, answer.confirmation, answer.status,
            answer.reason_code, answer.additional, now_ns, answer.assignment_id or
            answer.case_id))


def _passthrough_key(participant_id: int, message):
    kind = type(message)
    if kind is TransferRequest or kind is ReturnRequest:
        return participant_id, message.transfer_id
    if kind is RequestToPay:
        return "rtp", participant_id, message.request_id
    return participant_id, getattr(message, "transfer_id", "")


def _answer(rejects: list[Written]) -> bytes:
    if len(rejects) == 1:
        return rejects[0].body
    return batch([written.body for written in rejects])


def _used() -> Invalid:
    return Invalid("DUPL", "BizMsgIdr already used for another message", "AppHdr/BizMsgIdr")


def _random_id() -> str:
    return "P" + uuid.uuid4().hex[:32]


def _outbound_problem(written: Written) -> str | None:
    """None when an outbound envelope is valid against its XSDs (head + document)."""
    root = xml.parse(written.body)
    header, document = root[0], root[1]
    return xml.validate(xml.HEAD, header) or xml.validate(written.definition, document)


def outbound_problem(body: bytes) -> str | None:
    """For tests and the bench: None when every envelope in `body` is XSD-valid."""
    root = xml.parse(body)
    envelopes = list(root) if root.tag.endswith("}Batch") else [root]
    for envelope in envelopes:
        header, document = envelope[0], envelope[1]
        definition = xml.DEFINITION_BY_NAMESPACE[document.tag[1:].partition("}")[0]]
        problem = xml.validate(xml.HEAD, header) or xml.validate(definition, document)
        if problem is not None:
            return f"{definition}: {problem}"
    return None


async def start_iso20022_connector(gateway, config: Iso20022Config, registry=None,
                                   state_log: StateLog | None = None,
                                   outbox_log: StateLog | None = None) -> Iso20022Connector:
    """What the composition root calls: build, load its store (`state_log`) and its outbox
    (`outbox_log`), register metrics, attach the banks' sinks, listen. Stop with `await
    connector.close()` before the gateway closes (it closes the store too)."""
    connector = Iso20022Connector(gateway, config, state_log, outbox_log)
    if registry is not None:
        connector.register_metrics(registry)
    await connector.start()
    return connector
