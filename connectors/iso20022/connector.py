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
content) is acknowledged without reaching the switch again; the same BizMsgIdr with other
content is refused (admi.002 DUPL). Outbound ids are deterministic (outbound.py).

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
from collections import OrderedDict
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from connectors.http.jws import Signer, VerifyKey
from connectors.iso20022 import limits, xml
from connectors.iso20022.common import Invalid, Members
from connectors.iso20022.inbound import (
    AskStatus,
    Context,
    OriginalRefs,
    Recall,
    RecallAnswer,
    Submit,
    decode,
    header_id,
    open_envelope,
    split_body,
)
from connectors.iso20022.outbound import Writer, Written, batch, iso_id, transfer_status
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


class _Bounded(OrderedDict):
    """A dict that forgets its oldest entries past `size_max`."""

    def __init__(self, size_max: int) -> None:
        super().__init__()
        self.size_max = size_max

    def put(self, key, value) -> None:
        self[key] = value
        if len(self) > self.size_max:
            self.popitem(last=False)


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


class _RecallCase:
    __slots__ = ("requester_id", "payee_id", "case_id", "refs")

    def __init__(self, requester_id: int, payee_id: int, case_id: str, refs: OriginalRefs):
        self.requester_id = requester_id
        self.payee_id = payee_id
        self.case_id = case_id
        self.refs = refs


class BankSink:
    """The gateway Sink of one bank."""

    __slots__ = ("connector", "participant_id")

    def __init__(self, connector: Iso20022Connector, participant_id: int) -> None:
        self.connector = connector
        self.participant_id = participant_id

    def deliver(self, message) -> None:
        self.connector.deliver(self.participant_id, message)

    def flush(self) -> None:
        self.connector.delivery.flush()

    def close(self, reason: str) -> None:
        """Nothing to end: every request carries its own credentials."""


class Iso20022Connector:
    def __init__(self, gateway, config: Iso20022Config = Iso20022Config()) -> None:
        self.gateway = gateway
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.banks = {bank.participant_id: bank for bank in config.banks}
        self.members = Members(config.switch_member_id, {
            bank.participant_id: (bank.member_id, *bank.other_member_ids)
            for bank in config.banks})
        self.writer = Writer(self.members)
        # msg id (or long-id reference) the switch sent -> (scope participant, id).
        self.sent: _Bounded = _Bounded(limits.REFERENCES_MAX)
        self.passthrough: _Bounded = _Bounded(limits.PASS_THROUGH_MAX)
        self.credit_kinds: _Bounded = _Bounded(limits.PASS_THROUGH_MAX)
        self.recalls: _Bounded = _Bounded(limits.RECALLS_MAX)
        self.seen: dict[int, _Bounded] = {}
        self.reports: dict[tuple[int, str], list[TransferOutcome]] = {}
        self.report_sequence: dict[tuple[int, str], int] = {}
        self._report_timers: list[asyncio.TimerHandle] = []
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
            policy=config.delivery, signer=signer, client_ssl=client_ssl)
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
        for timer in self._report_timers:
            timer.cancel()
        await self.inbound.close(grace_ms)
        for task in list(self._tasks):
            task.cancel()
        for participant_id, sink in self.sinks.items():
            self.gateway.detach(participant_id, sink)
        await self.delivery.close(grace_ms)

    def register_metrics(self, registry) -> None:
        stats = self.delivery.stats
        for field in ("delivered_total", "requests_total", "retried_total", "given_up_total",
                      "refused_total", "dropped_queue_full_total",
                      "dropped_no_endpoint_total"):
            registry.gauge(f"ponte_iso20022_delivery_{field}",
                           f"ISO 20022 delivery to banks: {field.replace('_', ' ')}.",
                           lambda field=field: getattr(stats, field), kind="counter")
        registry.gauge("ponte_iso20022_rejected_total", "Bank messages answered with admi.002.",
                       lambda: self.rejected_total, kind="counter")

    # -- out: the core's messages for a bank -------------------------------------------

    def _send(self, written: Written) -> None:
        if self.config.validate_outbound:
            problem = _outbound_problem(written)
            if problem is not None:  # a bug of ours: never send a message that is not valid
                log.error("iso20022.outbound_invalid definition=%s problem=%s",
                          written.definition, problem)
                return
        self.delivery.send(written)

    def deliver(self, participant_id: int, message) -> None:
        now_ns = time.time_ns()
        writer = self.writer
        kind = type(message)
        if kind is CreditRequest:
            payer = message.payer_participant_id
            key = (payer, message.transfer_id)
            written = writer.credit(message, participant_id, now_ns,
                                    self.passthrough.get(key))
            self.sent.put(written.biz_msg_id, key)
            tx_id = iso_id(message.transfer_id, payer)
            if tx_id != message.transfer_id:
                self.sent.put(tx_id, key)
            credit_kind = "pacs.004" if message.return_of is not None else "pacs.008"
            self.credit_kinds.put(key, credit_kind)
            self._send(written)
        elif kind is TransferOutcome:
            self._outcome(participant_id, message, now_ns)
        elif kind is Refused:
            self._refused(participant_id, message, now_ns)
        elif kind is RequestToPayNotice:
            written = writer.request_to_pay(participant_id, message, now_ns)
            self.sent.put(written.biz_msg_id, (message.payee_participant_id,
                                               message.request_id))
            self._send(written)
        elif kind is RequestToPayOutcome:
            if participant_id == message.payee_participant_id:
                key = ("rtp", participant_id, message.request_id)
                passthrough = self.passthrough.get(key)
                if message.state is not RequestToPayState.OPEN:
                    self.passthrough.pop(key, None)
                self._send(writer.request_to_pay_status(participant_id, message, passthrough,
                                                        now_ns))
        elif kind is ErrorAnswer:
            self._send(writer.reject(participant_id, "", Result(message.result).name,
                                     message.detail or "the switch could not act on a "
                                     "message", "", now_ns, _random_id()))
        # ResolveAnswer: ISO banks do not resolve through the connector.

    def _outcome(self, participant_id: int, outcome: TransferOutcome, now_ns: int) -> None:
        key = (outcome.payer_participant_id, outcome.transfer_id)
        final = outcome.state in (TransferState.COMMITTED, TransferState.REJECTED,
                                  TransferState.EXPIRED)
        if participant_id == outcome.payer_participant_id:
            passthrough = self.passthrough.pop(key, None) if final else self.passthrough.get(key)
            kind = passthrough.kind if passthrough is not None else "pacs.008"
            self._send(self.writer.outcome(participant_id, outcome, now_ns, passthrough, kind))
        else:
            kind = self.credit_kinds.pop(key, "pacs.008") if final else \
                self.credit_kinds.get(key, "pacs.008")
            self._send(self.writer.outcome(participant_id, outcome, now_ns, None, kind))
        if outcome.state is TransferState.COMMITTED:
            bank = self.banks.get(participant_id)
            if bank is not None and bank.notifications:
                if "camt.054" in bank.notifications:
                    self._send(self.writer.notification(participant_id, outcome, now_ns))
                if "camt.052" in bank.notifications:
                    entries = self.reports.setdefault((participant_id, outcome.currency), [])
                    if len(entries) < limits.REPORT_ENTRIES_MAX:
                        entries.append(outcome)
                    else:
                        self._flush_report(participant_id, outcome.currency)
                        self.reports[(participant_id, outcome.currency)] = [outcome]

    def _refused(self, participant_id: int, refused: Refused, now_ns: int) -> None:
        writer = self.writer
        if refused.request_type is RequestType.REQUEST_TO_PAY:
            key = ("rtp", participant_id, refused.id)
            outcome = RequestToPayOutcome(
                payee_participant_id=participant_id, request_id=refused.id,
                state=RequestToPayState.REJECTED, result=refused.result)
            self._send(writer.request_to_pay_status(participant_id, outcome,
                                                    self.passthrough.pop(key, None), now_ns))
            return
        if refused.request_type in (RequestType.TRANSFER, RequestType.RETURN):
            passthrough = self.passthrough.pop((participant_id, refused.id), None)
            if passthrough is not None:
                refs, related = passthrough.refs, passthrough.related
            else:
                refs = OriginalRefs(iso_id(refused.id, participant_id), tx_id=iso_id(
                    refused.id, participant_id))
                related = None
            self._send(writer.refusal(participant_id, refs, refused.result, now_ns, related))
            return
        self._send(writer.reject(participant_id, refused.id, refused.result.name,
                                 f"refused: {refused.request_type.value}", "", now_ns,
                                 _random_id()))

    def _arm_report(self, bank: BankConfig) -> None:
        def fire() -> None:
            for (participant_id, currency) in list(self.reports):
                if participant_id == bank.participant_id:
                    self._flush_report(participant_id, currency)
            self.delivery.flush()
            self._arm_report(bank)
        self._report_timers.append(self.loop.call_later(bank.report_interval_ms / 1000, fire))

    def _flush_report(self, participant_id: int, currency: str) -> None:
        entries = self.reports.pop((participant_id, currency), None)
        if not entries:
            return
        sequence = self.report_sequence.get((participant_id, currency), 0) + 1
        self.report_sequence[(participant_id, currency)] = sequence
        self._send(self.writer.report(participant_id, currency, entries, sequence,
                                      time.time_ns()))

    # -- in: a bank's body -----------------------------------------------------------------

    async def receive(self, participant_id: int, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, XML answer) for a bank's body: 202 and nothing when every message
        was taken (once durable), else 400 with an admi.002 per message not taken (a batch's
        valid messages are still taken)."""
        now_ns = time.time_ns()
        members = self.members
        member = members.member(participant_id)
        rejects: list[Written] = []
        try:
            elements = split_body(body)
        except Invalid as error:
            rejects.append(self._reject(participant_id, "", error, now_ns))
            return 400, _answer(rejects)
        context = Context(participant_id, member, now_ns, members,
                          self.config.transfer_expiry_ms, self.config.request_to_pay_expiry_ms,
                          self.sent.get)
        seen = self.seen.get(participant_id)
        if seen is None:
            seen = self.seen[participant_id] = _Bounded(limits.SEEN_MESSAGES_PER_PARTICIPANT_MAX)
        taken = []  # (envelope, action)
        in_body: set[str] = set()
        for element in elements:
            try:
                envelope = open_envelope(element, member, members, now_ns)
                earlier = seen.get(envelope.biz_msg_id)
                if earlier is not None or envelope.biz_msg_id in in_body:
                    if earlier == envelope.digest:
                        continue  # a resend of a message taken before: acknowledged again
                    raise Invalid("DUPL", "BizMsgIdr already used for another message",
                                  "AppHdr/BizMsgIdr")
                action = decode(envelope, context)
                if type(action) is RecallAnswer:
                    self._check_recall_answer(participant_id, action)
            except Invalid as error:
                rejects.append(self._reject(participant_id, header_id(element), error, now_ns))
                continue
            in_body.add(envelope.biz_msg_id)
            taken.append((envelope, action))
        busy = False
        durable = _Durable(self.loop)
        gateway = self.gateway
        for envelope, action in taken:
            kind = type(action)
            if kind is Submit:
                message = action.message
                passthrough = action.passthrough
                key = None
                if passthrough is not None:
                    key = _passthrough_key(participant_id, message)
                    self.passthrough.put(key, passthrough)
                durable.left += 1
                result = gateway.submit(participant_id, message, durable)
                if result is not Result.OK:
                    durable.left -= 1
                    if key is not None:
                        self.passthrough.pop(key, None)
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
            seen.put(envelope.biz_msg_id, envelope.digest)
        if durable.left > 0:
            await durable.future
        self.delivery.flush()
        if rejects:
            self.rejected_total += len(rejects)
            if busy and len(rejects) == len(elements):
                return 503, _answer(rejects)
            return 400 if len(rejects) == len(elements) else 202, _answer(rejects)
        return 202, b""

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
        self.delivery.flush()

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
            self.delivery.flush()
            return
        payee = answer.payee_participant_id
        written = self.writer.recall(payee, payer, recall.transfer_id, recall.case_id,
                                     answer.amount_minor, answer.currency, recall.reason_code,
                                     recall.additional, now_ns)
        self.recalls.put(written.biz_msg_id, _RecallCase(payer, payee, recall.case_id,
                                                         recall.refs))
        self._send(written)
        self.delivery.flush()

    def _check_recall_answer(self, participant_id: int, answer: RecallAnswer) -> None:
        case = self.recalls.get(answer.case_id)
        if case is None or case.payee_id != participant_id:
            raise Invalid("NOOR", "no recall of yours is open under that case id",
                          "RslvdCase/Id")

    def _forward_recall_answer(self, participant_id: int, answer: RecallAnswer,
                               now_ns: int) -> None:
        case = self.recalls.get(answer.case_id)
        if answer.confirmation != "PDCR" and answer.status != "PDCR":
            self.recalls.pop(answer.case_id, None)
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


async def start_iso20022_connector(gateway, config: Iso20022Config, registry=None
                                   ) -> Iso20022Connector:
    """What the composition root calls: build, register metrics, attach the banks' sinks,
    listen. Stop with `await connector.close()` before the gateway closes."""
    connector = Iso20022Connector(gateway, config)
    if registry is not None:
        connector.register_metrics(registry)
    await connector.start()
    return connector
