"""Inbound mapping: a bank's HTTP body -> validated envelopes -> core messages and the
connector's own actions. Pure: no I/O; the clock and the authenticated sender are
arguments.

Order of checks for each message (the first failure is the admi.002's reason):
1. the envelope: one AppHdr (head.001.001.02) and one Document of a supported definition;
2. the AppHdr against its XSD, then the Document against its XSD;
3. the header's rules: MsgDefIdr names the Document's definition, Fr is the authenticated
   participant's member id, To is the switch, CreDt is neither in the future nor stale;
4. the message's rules (`decode`): one transaction, ids of Ponte's id grammar, amounts
   with no more decimals than the currency has, settlement date today (+/- a day), agents
   bound to the sender, a creditor named by proxy or by member id + account;
5. the core's own types (`msgspec.convert` into the core Struct, with its constraints).

It must never submit anything itself, never trust a member id it did not check against the
authenticated participant, and never keep a reference to a national ID (a NATIONAL_ID
proxy goes to the gateway, which tokenises it, like any other door).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from lxml import etree

from connectors.iso20022 import limits, xml
from connectors.iso20022.common import (
    BATCH_NS,
    HEAD_NS,
    NS_PER_DAY,
    Invalid,
    Members,
    amount_minor,
    date_days,
    datetime_ns,
)
from connectors.iso20022.codes import reason_text
from switch.core.messages import (
    PayeeAnswer,
    RequestToPay,
    RequestToPayDecision,
    ReturnRequest,
    StatusQuery,
    TransferRequest,
    id_valid,
)

NS = xml.NS_PREFIX
_HDR = "{%s}" % HEAD_NS
_DOCUMENT = "Document"
SUPPORTED_IN = frozenset({
    "pacs.008.001.08", "pacs.002.001.10", "pacs.004.001.10", "pacs.028.001.03",
    "camt.056.001.08", "camt.029.001.09", "pain.013.001.07", "pain.014.001.07",
})

# Proxy types (ExternalProxyAccountType1Code, or Prtry with Ponte's alias type names).
PROXY_TYPES = {
    "TELE": "MSISDN", "MOBL": "MSISDN", "MBNO": "MSISDN", "EMAL": "EMAIL", "EMAIL": "EMAIL",
    "MSISDN": "MSISDN", "NATIONAL_ID": "NATIONAL_ID", "NIDN": "NATIONAL_ID",
    "HANDLE": "HANDLE", "RANDOM": "RANDOM", "EVP": "RANDOM", "ACCOUNT": "ACCOUNT",
}
ACCEPTED = frozenset({"ACCP", "ACSC", "ACSP", "ACWC", "ACWP", "ACCC"})
NOT_FINAL = frozenset({"ACTC", "PDNG", "RCVD", "ACFC"})


class Path:
    """Clark-notation paths for one namespace, built once (lxml's find is fastest with them).
    The rare messages read their fields with these; the hot ones walk children (Tags)."""

    def __init__(self, definition: str) -> None:
        self.prefix = "{%s%s}" % (NS, definition)
        self._cache: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        found = self._cache.get(path)
        if found is None:
            found = "/".join(self.prefix + step for step in path.split("/"))
            self._cache[path] = found
        return found


class Tags:
    """The Clark names of one namespace's elements as attributes (`tags.GrpHdr` is
    '{urn:...}GrpHdr'), built on first use and plain attribute reads after that. The hot
    messages (pacs.008, pacs.002, the AppHdr) are read in one pass over each group's
    children with these: one `find` with a path costs more than walking a whole group."""

    def __init__(self, namespace: str) -> None:
        self._prefix = "{%s}" % namespace

    def __getattr__(self, local: str) -> str:
        if local.startswith("__"):
            raise AttributeError(local)
        name = self._prefix + local
        setattr(self, local, name)
        return name


_PATHS = {definition: Path(definition) for definition in SUPPORTED_IN}
_TAGS = {definition: Tags(NS + definition) for definition in SUPPORTED_IN}
_HP = Path("head.001.001.02")
_HP.prefix = _HDR
H = Tags(HEAD_NS)


def _kids(element: etree._Element) -> dict[str, etree._Element]:
    """An element's children by tag (the last of a repeated one): the parser keeps no
    comments or processing instructions, so every child is an element."""
    return {child.tag: child for child in element}


def _strip(element: etree._Element | None) -> str:
    if element is None:
        return ""
    text = element.text
    return text.strip() if text else ""


class Envelope:
    """One message as received: its header fields and its (validated) message element."""

    __slots__ = ("definition", "biz_msg_id", "sender", "receiver", "created_ns", "created",
                 "header", "message", "p", "t")

    def __init__(self, definition: str, biz_msg_id: str, sender: str, receiver: str,
                 created_ns: int, created: str, header: etree._Element,
                 message: etree._Element) -> None:
        self.definition = definition
        self.biz_msg_id = biz_msg_id
        self.sender = sender
        self.receiver = receiver
        self.created_ns = created_ns
        self.created = created  # AppHdr/CreDt as written
        self.header = header
        self.message = message
        self.p = _PATHS[definition]
        self.t = _TAGS[definition]

    def related(self) -> tuple[str, str, str, str, str]:
        """(Fr, To, BizMsgIdr, MsgDefIdr, CreDt) for the answer's AppHdr/Rltd."""
        return (self.sender, self.receiver, self.biz_msg_id, self.definition, self.created)


def split_body(body: bytes) -> list[etree._Element]:
    """The envelope elements of a body (one, or a <Batch> of them); Invalid for the body."""
    try:
        root = xml.parse(body)
    except xml.XmlRefused as error:
        raise Invalid("FF01", str(error)) from None
    if root.tag == "{%s}Batch" % BATCH_NS:
        envelopes = [child for child in root if type(child.tag) is str]
        if not envelopes:
            raise Invalid("FF01", "empty batch")
        if len(envelopes) > limits.BATCH_MESSAGES_MAX:
            raise Invalid("FF01", f"more than {limits.BATCH_MESSAGES_MAX} messages in a batch")
        return envelopes
    return [root]


def header_id(element: etree._Element) -> str:
    """The BizMsgIdr of an envelope, for an admi.002's reference, even if it is invalid."""
    for child in element:
        if child.tag == H.AppHdr:
            found = child.findtext(H.BizMsgIdr)
            if found and len(found) <= 35:
                return found.strip()
    return ""


def open_envelope(element: etree._Element, sender_member: str, members: Members,
                  now_ns: int) -> Envelope:
    """Steps 1-3 of the module docstring for one envelope element."""
    # The parser keeps no comments or processing instructions: every child is an element.
    if len(element) != 2 or element[0].tag != H.AppHdr:
        raise Invalid("FF01", "an envelope holds one AppHdr (head.001.001.02) and then one "
                              "Document", "Envelope")
    header = element[0]
    document = element[1]
    tag = document.tag
    if not tag.startswith("{" + NS):
        raise Invalid("FF01", f"unknown namespace of {tag}", "Document")
    namespace, _, local = tag[1:].partition("}")
    definition = xml.DEFINITION_BY_NAMESPACE.get(namespace)
    if definition is None or definition not in SUPPORTED_IN:
        raise Invalid("FF01", f"message definition {namespace[len(NS):]} is not accepted",
                      "Document")
    problem = xml.validate(xml.HEAD, header)
    if problem is not None:
        raise Invalid("FF01", "AppHdr: " + problem, "AppHdr")
    if local != _DOCUMENT:
        # The FedNow envelope carries the message element without its Document wrapper.
        wrapper = etree.Element(f"{{{namespace}}}{_DOCUMENT}", nsmap={None: namespace})
        wrapper.append(document)
        element.append(wrapper)
        document = wrapper
    problem = xml.validate(definition, document)
    if problem is not None:
        raise Invalid("FF01", f"{definition}: {problem}", "Document")
    # Valid against head.001: Fr, To, BizMsgIdr, MsgDefIdr and CreDt are there, once each.
    fields = _kids(header)
    defined = _strip(fields[H.MsgDefIdr])
    if defined != definition:
        raise Invalid("FF01", f"MsgDefIdr {defined} does not name the document "
                              f"({definition})", "AppHdr/MsgDefIdr")
    sender = _party_member(fields[H.Fr])
    if sender != sender_member:
        raise Invalid("RC01", "AppHdr/Fr is not the authenticated participant's member id",
                      "AppHdr/Fr")
    receiver = _party_member(fields[H.To])
    if not members.is_switch(receiver):
        raise Invalid("RC01", "AppHdr/To is not the switch's member id", "AppHdr/To")
    created = _strip(fields[H.CreDt])
    created_ns = datetime_ns(created, "AppHdr/CreDt")
    check_created(created_ns, now_ns, "AppHdr/CreDt")
    biz_msg_id = _strip(fields[H.BizMsgIdr])
    return Envelope(definition, biz_msg_id, sender, receiver, created_ns, created, header,
                    document[0])


def check_created(created_ns: int, now_ns: int, location: str) -> None:
    if created_ns > now_ns + limits.CREATED_AHEAD_MS_MAX * 1_000_000:
        raise Invalid("DT01", "creation time is in the future", location)
    if created_ns < now_ns - limits.CREATED_AGE_MS_MAX * 1_000_000:
        raise Invalid("DT01", "creation time is too old", location)


def _party_member(party: etree._Element) -> str:
    """The member id of a head.001 Party44Choice (FIId: member id, BIC or other id)."""
    choice = party[0]
    if choice.tag == H.FIId:
        return _institution(choice[0], H)  # FinInstnId comes first in FIId
    return _strip(choice.find(_HP("Id/OrgId/AnyBIC")))


def _institution(institution: etree._Element, t: Tags) -> str:
    """FinInstnId: ClrSysMmbId/MmbId, else BICFI, else Othr/Id."""
    if len(institution) == 1:  # the usual case: one identification
        only = institution[0]
        tag = only.tag
        if tag == t.ClrSysMmbId:
            return _strip(only[-1])  # ClrSysMmbId: ClrSysId?, MmbId
        if tag == t.BICFI:
            return _strip(only)
        if tag == t.Othr:
            return _strip(only[0])  # Othr: Id, SchmeNm?, Issr?
        return ""
    fields = _kids(institution)
    found = fields.get(t.ClrSysMmbId)
    if found is not None:
        return _strip(found[-1])
    found = fields.get(t.BICFI)
    if found is not None:
        return _strip(found)
    found = fields.get(t.Othr)
    return _strip(found[0]) if found is not None else ""


def _agent(agent: etree._Element | None, t: Tags) -> str | None:
    """The member id of a BranchAndFinancialInstitutionIdentification, None without one."""
    if agent is None:
        return None
    return _institution(agent[0], t)  # FinInstnId comes first


def agent_member(element: etree._Element, p: Path, path: str) -> str | None:
    """The member id of a BranchAndFinancialInstitutionIdentification at `path`, or None."""
    institution = element.find(p(path + "/FinInstnId"))
    if institution is None:
        return None
    return _institution(institution, _tags_of(p))


def _tags_of(p: Path) -> Tags:
    return _TAGS[p.prefix[1 + len(NS):-1]]


def _text(element: etree._Element, p: Path, path: str) -> str:
    found = element.findtext(p(path))
    return found.strip() if found else ""


def _single(message: etree._Element, p: Path, path: str, location: str) -> etree._Element:
    found = message.findall(p(path))
    return _one(found, location)


def _one(found: list, location: str) -> etree._Element:
    if len(found) != limits.TRANSACTIONS_PER_MESSAGE_MAX:
        raise Invalid("FF01", f"one {location} per message (the instant-payment rule), "
                              f"{len(found)} found", location)
    return found[0]


def _joined(element, p: Path, path: str) -> str:
    """The texts of a repeated element (Ustrd, AddtlInf), joined by spaces."""
    return " ".join(item.text.strip() for item in element.findall(p(path)) if item.text)


def _id(text: str, location: str) -> str:
    if not id_valid(text):
        raise Invalid("FF01", f"{location} {text!r} is not a Ponte id (letters, digits, "
                              "'.', '_', ':', '-'; first a letter or digit)", location)
    return text


def _convert(value: dict, kind):
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as error:
        raise Invalid("FF01", str(error)) from None


def _bind_agent(member: str | None, sender: str, location: str) -> None:
    if member is not None and member != sender:
        raise Invalid("RC01", f"{location} is not the sending participant", location)


def _settlement_date(element, p: Path, path: str, now_ns: int) -> None:
    text = element.findtext(p(path))
    if text is not None:
        _check_settlement_date(text, path, now_ns)


def _check_settlement_date(text: str, location: str, now_ns: int) -> None:
    days = date_days(text, location)
    if abs(days - now_ns // NS_PER_DAY) > limits.SETTLEMENT_DATE_SKEW_DAYS_MAX:
        raise Invalid("DT01", f"settlement date {text} is not today", location)


def _account_id(account: etree._Element | None, t: Tags) -> str:
    """A CashAccount's id (IBAN or Othr/Id), or ""."""
    if account is None:
        return ""
    choice = account[0][0]  # CashAccount: Id first; Id: IBAN | Othr
    if choice.tag == t.IBAN:
        return _strip(choice)
    return _strip(choice[0])  # Othr: Id, SchmeNm?, Issr?


def account_id(element: etree._Element, p: Path, path: str) -> str:
    """The account id at `path` (a CashAccount: IBAN or Othr/Id), or ""."""
    return _account_id(element.find(p(path)), _tags_of(p))


def _party(account: etree._Element | None, agent: etree._Element | None, t: Tags,
           members: Members, account_path: str, agent_path: str, location: str) -> dict:
    """The alias a creditor (or a debtor, for a request-to-pay) is named by: the account's
    proxy (type + id) when present, else its IBAN, else member id + account number."""
    if account is None:
        raise Invalid("AC01", f"{location}: no account or proxy", account_path)
    fields = _kids(account)
    proxy = fields.get(t.Prxy)
    if proxy is not None:
        kind = "MSISDN"
        value = ""
        for child in proxy:  # Prxy: Tp? (Cd | Prtry), Id
            if child.tag == t.Tp:
                kind = _strip(child[0]) or kind
            else:
                value = _strip(child)
        alias_type = PROXY_TYPES.get(kind.upper())
        if alias_type is None:
            raise Invalid("AC01", f"proxy type {kind} is not supported",
                          account_path + "/Prxy/Tp")
        return {"alias_type": alias_type, "alias_value": value}
    choice = fields[t.Id][0]  # Id: IBAN | Othr
    if choice.tag == t.IBAN:
        return {"alias_type": "ACCOUNT", "alias_value": _strip(choice)}
    number = _strip(choice[0])
    member = _agent(agent, t)
    participant_id = members.participant(member) if member else None
    if participant_id is None:
        raise Invalid("RC01", f"{agent_path} names no participant of the scheme", agent_path)
    return {"alias_type": "ACCOUNT", "alias_value": f"{participant_id}:{number}"}


def party_from_account(element, p: Path, account_path: str, agent_path: str,
                       members: Members, location: str) -> dict:
    """`_party` for an account and an agent found by path under `element`."""
    return _party(element.find(p(account_path)), element.find(p(agent_path)), _tags_of(p),
                  members, account_path, agent_path, location)


# -- the actions a message asks for --------------------------------------------------------


class OriginalRefs(msgspec.Struct, array_like=True):
    """What a bank's message said about the one it answers (echoed back in answers)."""

    msg_id: str = ""
    msg_name: str = ""
    instr_id: str = ""
    end_to_end_id: str = ""
    tx_id: str = ""
    uetr: str = ""
    created: str = ""


Related = tuple[str, str, str, str, str]  # Envelope.related()


class Passthrough(msgspec.Struct, array_like=True):
    """What a payer bank's pacs.008 (or a payee bank's pacs.004, a pain.013) carried that
    the core does not: its references, to quote in answers, and the parties' XML, to
    forward to the payee bank unchanged. Kept by the connector's state (state.py) until
    the outcome has gone out, across restarts."""

    refs: OriginalRefs
    related: Related | None
    kind: str
    debtor: bytes = b""
    debtor_account: bytes = b""
    creditor: bytes = b""
    remittance: bytes = b""
    purpose: bytes = b""


class Submit(msgspec.Struct, tag=True, array_like=True):
    """Hand `message` (a core Inbound) to the gateway."""

    message: Any
    passthrough: Passthrough | None = None


class AskStatus(msgspec.Struct, tag=True, array_like=True):
    """pacs.028: ask the gateway, answer with a pacs.002 quoting `refs`."""

    query: StatusQuery
    refs: OriginalRefs


class Recall(msgspec.Struct, tag=True, array_like=True, kw_only=True):
    """camt.056 from the payer bank of (payer, transfer_id): forward it to the payee bank."""

    payer_participant_id: int
    transfer_id: str
    case_id: str
    assignment_id: str
    reason_code: str
    additional: str
    refs: OriginalRefs


class RecallAnswer(msgspec.Struct, tag=True, array_like=True, kw_only=True):
    """camt.029 from the payee bank: forward it to the bank that asked."""

    case_id: str
    confirmation: str
    status: str
    reason_code: str
    additional: str
    assignment_id: str


class Ignore(msgspec.Struct, tag=True, array_like=True):
    """A message that changes nothing (a technical acceptance, a pending status)."""

    why: str


_ENCODER = msgspec.msgpack.Encoder()


def digest(action) -> bytes:
    """What the switch read from a message, for the BizMsgIdr window: the same message sent
    again (whatever its prefixes, whitespace or AppHdr, where a resend carries a new CreDt
    and PssblDplct) has the same digest; another message under the same BizMsgIdr has
    another. Decoders leave `Passthrough.related` (the AppHdr) empty for this reason: the
    connector fills it in after."""
    return hashlib.blake2b(_ENCODER.encode(action), digest_size=16).digest()


class Context:
    """What decoding needs besides the message: who sent it, the time, the tables."""

    __slots__ = ("participant_id", "member", "now_ns", "members", "transfer_expiry_ms",
                 "request_to_pay_expiry_ms", "sent")

    def __init__(self, participant_id: int, member: str, now_ns: int, members: Members,
                 transfer_expiry_ms: int, request_to_pay_expiry_ms: int, sent) -> None:
        self.participant_id = participant_id
        self.member = member
        self.now_ns = now_ns
        self.members = members
        self.transfer_expiry_ms = transfer_expiry_ms
        self.request_to_pay_expiry_ms = request_to_pay_expiry_ms
        # sent(msg_id) -> (payer_participant_id, transfer_id or request_id) of a message
        # the switch sent, or None (connector.SentMessages).
        self.sent = sent


def decode(envelope: Envelope, context: Context):
    """Step 4-5: the action one valid envelope asks for; Invalid otherwise."""
    return _DECODERS[envelope.definition[:8]](envelope, context)


def _forwarded(element: etree._Element | None, t: Tags) -> bytes:
    """A group of the payer bank's message as forwarded to the payee bank (with its own
    namespace declarations, so whatever prefixes the bank used stay bound), without a
    person's identification: a PrvtId (national ID, passport, tax id, date and place of
    birth) goes with the `Id` holding it, and the debtor account's proxy (which may be a
    national ID) too. Ponte never forwards or stores a raw national ID; an organisation's
    id stays. Where the XSD lets them be is checked, not the whole subtree (the hot path)."""
    if element is None:
        return b""
    tag = element.tag
    if tag == t.Dbtr or tag == t.Cdtr:  # Nm?, PstlAdr?, Id? (OrgId | PrvtId), ...
        for child in element:
            if child.tag == t.Id:
                if child[0].tag == t.PrvtId:
                    element.remove(child)
                break
    elif tag == t.DbtrAcct:  # Id, Tp?, Ccy?, Nm?, Prxy?
        if element[-1].tag == t.Prxy:
            element.remove(element[-1])
    elif tag == t.RmtInf and element[-1].tag == t.Strd:  # Ustrd*, Strd* (Invcr, Invcee)
        for found in list(element.iter(t.PrvtId)):
            holder = found.getparent()  # a Party38Choice `Id`: optional where it occurs
            holder.getparent().remove(holder)
    return etree.tostring(element, with_tail=False)


def _original_transfer_id(tx_id: str, uetr: str, msg_id: str) -> str:
    """The transfer id of a bank's own pacs.008 (TxId, else UETR, else MsgId), for a
    message that points at it (status request, recall)."""
    return tx_id or uetr or msg_id


def pacs008(envelope: Envelope, context: Context) -> Submit:
    t = envelope.t
    message = envelope.message
    header = _kids(message[0])  # GrpHdr comes first
    msg_id = _strip(header[t.MsgId])
    created = _strip(header[t.CreDtTm])
    created_ns = datetime_ns(created, "GrpHdr/CreDtTm")
    check_created(created_ns, context.now_ns, "GrpHdr/CreDtTm")
    if _strip(header[t.NbOfTxs]) != "1":
        raise Invalid("FF01", "NbOfTxs must be 1", "GrpHdr/NbOfTxs")
    _bind_agent(_agent(header.get(t.InstgAgt), t), context.member, "GrpHdr/InstgAgt")
    found = header.get(t.IntrBkSttlmDt)
    if found is not None:
        _check_settlement_date(found.text, "IntrBkSttlmDt", context.now_ns)
    if len(message) == 2:  # GrpHdr, CdtTrfTxInf: the usual case
        tx = message[1]
    else:
        tx = _one([child for child in message if child.tag == t.CdtTrfTxInf], "CdtTrfTxInf")
    fields = _kids(tx)
    ids = _kids(fields[t.PmtId])
    instr_id = _strip(ids.get(t.InstrId))
    end_to_end_id = _strip(ids.get(t.EndToEndId))
    tx_id = _strip(ids.get(t.TxId))
    uetr = _strip(ids.get(t.UETR))
    transfer_id = _id(_original_transfer_id(tx_id, uetr, msg_id), "PmtId/TxId")
    amount = fields[t.IntrBkSttlmAmt]
    currency = amount.get("Ccy")
    value = amount_minor(amount.text, currency, "IntrBkSttlmAmt")
    found = fields.get(t.IntrBkSttlmDt)
    if found is not None:
        _check_settlement_date(found.text, "IntrBkSttlmDt", context.now_ns)
    _bind_agent(_agent(fields.get(t.InstgAgt), t), context.member, "CdtTrfTxInf/InstgAgt")
    debtor_agent = _agent(fields[t.DbtrAgt], t)
    if debtor_agent and context.members.participant(debtor_agent) is not None:
        # An indirect participant's agent may be a bank the scheme does not know; one it
        # knows must be the sender.
        _bind_agent(debtor_agent, context.member, "DbtrAgt")
    payee = _party(fields.get(t.CdtrAcct), fields[t.CdtrAgt], t, context.members,
                   "CdtrAcct", "CdtrAgt", "creditor")
    remittance = fields.get(t.RmtInf)
    purpose = "" if remittance is None else " ".join(
        child.text.strip() for child in remittance if child.tag == t.Ustrd and child.text)
    purpose_code = fields.get(t.Purp)
    if not purpose and purpose_code is not None:
        purpose = _strip(purpose_code[0])  # Purp: Cd | Prtry
    debtor_account = fields.get(t.DbtrAcct)
    payer_account = _account_id(debtor_account, t)
    request = _convert({
        "transfer_id": transfer_id, "payee": payee, "amount_minor": value,
        "currency": currency, "expires_at_ns": created_ns
        + context.transfer_expiry_ms * 1_000_000, "end_to_end_id": end_to_end_id,
        "purpose": purpose[:140], "payer_account_ref": payer_account,
        # The debtor's account is what the payer bank knows its customer by: the opaque
        # end-user reference the directory's anti-enumeration buckets count per user.
        "payer_user_ref": payer_account,
    }, TransferRequest)
    refs = OriginalRefs(msg_id, envelope.definition, instr_id, end_to_end_id, tx_id, uetr,
                        created)
    passthrough = Passthrough(
        refs, None, "pacs.008", _forwarded(fields[t.Dbtr], t), _forwarded(debtor_account, t),
        _forwarded(fields[t.Cdtr], t), _forwarded(remittance, t), _forwarded(purpose_code, t))
    size = (len(passthrough.debtor) + len(passthrough.debtor_account)
            + len(passthrough.creditor) + len(passthrough.remittance)
            + len(passthrough.purpose))
    if size > limits.PASS_THROUGH_BYTES_MAX:
        # Kept until the outcome and written to the connector's store: bounded like a frame.
        raise Invalid("FF01", f"Dbtr, DbtrAcct, Cdtr, Purp and RmtInf take {size} bytes, "
                              f"more than the {limits.PASS_THROUGH_BYTES_MAX} forwarded",
                      "CdtTrfTxInf")
    return Submit(request, passthrough)


def _sent_original(context: Context, refs: OriginalRefs, location: str
                   ) -> tuple[int, str] | None:
    """(payer, transfer id) of a message the switch sent to this bank that `refs` points
    at: by its MsgId (remembered), else by InstrId (the payer's participant id, which the
    switch writes there) and TxId."""
    found = context.sent(refs.msg_id) if refs.msg_id else None
    if found is not None:
        return found
    if refs.instr_id.isdigit() and refs.tx_id and len(refs.instr_id) <= 8:
        return int(refs.instr_id), _id(refs.tx_id, location + "/OrgnlTxId")
    return None


def _refs(element, p: Path, group_path: str = "OrgnlGrpInf") -> OriginalRefs:
    return OriginalRefs(
        msg_id=_text(element, p, group_path + "/OrgnlMsgId"),
        msg_name=_text(element, p, group_path + "/OrgnlMsgNmId"),
        instr_id=_text(element, p, "OrgnlInstrId"),
        end_to_end_id=_text(element, p, "OrgnlEndToEndId"),
        tx_id=_text(element, p, "OrgnlTxId"), uetr=_text(element, p, "OrgnlUETR"))


def _reason(element, p: Path, path: str) -> tuple[str, str]:
    code = _text(element, p, path + "/Rsn/Cd") or _text(element, p, path + "/Rsn/Prtry")
    additional = _joined(element, p, path + "/AddtlInf")
    return code, additional


def pacs002(envelope: Envelope, context: Context):
    """A payee bank's status for a credit the switch sent it (pacs.008 or pacs.004)."""
    t = envelope.t
    message = envelope.message
    group = None  # the first OrgnlGrpInfAndSts
    transactions = []
    for child in message:  # GrpHdr, OrgnlGrpInfAndSts*, TxInfAndSts*, SplmtryData*
        tag = child.tag
        if tag == t.TxInfAndSts:
            transactions.append(child)
        elif tag == t.OrgnlGrpInfAndSts and group is None:
            group = child
    tx = _one(transactions, "TxInfAndSts")
    refs = OriginalRefs()
    status = ""
    reasons = []
    for child in tx:
        tag = child.tag
        if tag == t.OrgnlGrpInf:
            original = _kids(child)
            refs.msg_id = _strip(original[t.OrgnlMsgId])
            refs.msg_name = _strip(original[t.OrgnlMsgNmId])
        elif tag == t.OrgnlInstrId:
            refs.instr_id = _strip(child)
        elif tag == t.OrgnlEndToEndId:
            refs.end_to_end_id = _strip(child)
        elif tag == t.OrgnlTxId:
            refs.tx_id = _strip(child)
        elif tag == t.OrgnlUETR:
            refs.uetr = _strip(child)
        elif tag == t.TxSts:
            status = _strip(child)
        elif tag == t.StsRsnInf:
            reasons.append(child)
    if group is not None:
        original = _kids(group)
        if not refs.msg_id:
            refs.msg_id = _strip(original[t.OrgnlMsgId])
        if not status:
            status = _strip(original.get(t.GrpSts))
    if not status:
        raise Invalid("FF01", "no TxSts", "TxInfAndSts/TxSts")
    if status in NOT_FINAL:
        return Ignore(f"status {status} decides nothing")
    original = _sent_original(context, refs, "TxInfAndSts")
    if original is None:
        raise Invalid("NOOR", "the original message is not one the switch sent you",
                      "TxInfAndSts/OrgnlGrpInf/OrgnlMsgId")
    payer_id, transfer_id = original
    if status in ACCEPTED:
        return Submit(_convert({"payer_participant_id": payer_id, "transfer_id": transfer_id,
                                "accepted": True}, PayeeAnswer))
    if status != "RJCT":
        raise Invalid("FF01", f"TxSts {status} is not ACCP, ACSC, ACSP, ACWC or RJCT",
                      "TxInfAndSts/TxSts")
    code, additional = _reasons(reasons, t)
    return Submit(_convert({"payer_participant_id": payer_id, "transfer_id": transfer_id,
                            "accepted": False,
                            "reason": reason_text(code or "NARR", additional)}, PayeeAnswer))


def _reasons(reasons: list, t: Tags) -> tuple[str, str]:
    """The first reason code (Rsn/Cd, else Rsn/Prtry) and every AddtlInf of a list of
    StatusReasonInformation (or Cancellation/Return reason) elements."""
    code = ""
    additional = []
    for reason in reasons:  # Orgtr?, Rsn? (Cd | Prtry), AddtlInf*
        for child in reason:
            tag = child.tag
            if tag == t.Rsn:
                if not code:
                    code = _strip(child[0])
            elif tag == t.AddtlInf and child.text:
                additional.append(child.text.strip())
    return code, " ".join(additional)


def pacs004(envelope: Envelope, context: Context) -> Submit:
    """A payee bank returns (part of) a transfer it was credited."""
    p = envelope.p
    message = envelope.message
    header = message.find(p("GrpHdr"))
    msg_id = _text(header, p, "MsgId")
    created_ns = datetime_ns(header.findtext(p("CreDtTm")), "GrpHdr/CreDtTm")
    check_created(created_ns, context.now_ns, "GrpHdr/CreDtTm")
    if _text(header, p, "NbOfTxs") != "1":
        raise Invalid("FF01", "NbOfTxs must be 1", "GrpHdr/NbOfTxs")
    _bind_agent(agent_member(header, p, "InstgAgt"), context.member, "GrpHdr/InstgAgt")
    tx = _single(message, p, "TxInf", "TxInf")
    refs = _refs(tx, p)
    if not refs.msg_id:
        refs.msg_id = _text(message, p, "OrgnlGrpInf/OrgnlMsgId")
    original = _sent_original(context, refs, "TxInf")
    if original is None:
        raise Invalid("NOOR", "the returned transfer is not one the switch sent you "
                              "(OrgnlMsgId, or OrgnlInstrId + OrgnlTxId)", "TxInf")
    return_id = _id(_text(tx, p, "RtrId") or msg_id, "TxInf/RtrId")
    amount = tx.find(p("RtrdIntrBkSttlmAmt"))
    value = amount_minor(amount.text, amount.get("Ccy"), "RtrdIntrBkSttlmAmt")
    _settlement_date(tx, p, "IntrBkSttlmDt", context.now_ns)
    _bind_agent(agent_member(tx, p, "InstgAgt"), context.member, "TxInf/InstgAgt")
    code, additional = _reason(tx, p, "RtrRsnInf")
    request = _convert({
        "transfer_id": return_id,
        "original": {"payer_participant_id": original[0], "transfer_id": original[1]},
        "amount_minor": value,
        "expires_at_ns": created_ns + context.transfer_expiry_ms * 1_000_000,
        "reason": reason_text(code, additional) if code else additional[:140],
    }, ReturnRequest)
    mine = OriginalRefs(msg_id, envelope.definition, "", "", return_id, "",
                        header.findtext(p("CreDtTm")).strip())
    # The core's ReturnRequest has no currency (a return moves the original's): the
    # connector checks `returned_currency` against the original's before submitting.
    return Submit(request, Passthrough(mine, None, "pacs.004"))


def returned_currency(envelope: Envelope) -> str:
    """A pacs.004's RtrdIntrBkSttlmAmt/@Ccy. Read apart from `pacs004` so that what the
    BizMsgIdr window hashes (the Submit) stays as it was: a resend across an upgrade is
    still the same message."""
    p = envelope.p
    return envelope.message.find(p("TxInf/RtrdIntrBkSttlmAmt")).get("Ccy")


def pacs028(envelope: Envelope, context: Context) -> AskStatus:
    """A status request, from the payer bank about its pacs.008 or from a payee bank about
    a credit the switch sent it."""
    p = envelope.p
    message = envelope.message
    tx = _single(message, p, "TxInf", "TxInf")
    refs = _refs(tx, p)
    if not refs.msg_id:
        refs.msg_id = _text(message, p, "OrgnlGrpInf/OrgnlMsgId")
        refs.msg_name = _text(message, p, "OrgnlGrpInf/OrgnlMsgNmId")
    original = context.sent(refs.msg_id) if refs.msg_id else None
    if original is None:
        if refs.instr_id.isdigit() and len(refs.instr_id) <= 8 and refs.tx_id:
            original = (int(refs.instr_id), refs.tx_id)
        else:
            # The asker's own transfer: the id it gave it.
            original = (context.participant_id,
                        _original_transfer_id(refs.tx_id, refs.uetr, refs.msg_id))
    query = _convert({"payer_participant_id": original[0],
                      "transfer_id": _id(original[1], "TxInf/OrgnlTxId")}, StatusQuery)
    return AskStatus(query, refs)


def camt056(envelope: Envelope, context: Context) -> Recall:
    """The payer bank asks for a settled transfer back (recall): forwarded, moves nothing."""
    p = envelope.p
    message = envelope.message
    assignment_id = _text(message, p, "Assgnmt/Id")
    _bind_agent(agent_member(message, p, "Assgnmt/Assgnr/Agt"), context.member,
                "Assgnmt/Assgnr")
    underlying = _single(message, p, "Undrlyg", "Undrlyg")
    tx = _single(underlying, p, "TxInf", "Undrlyg/TxInf")
    refs = _refs(tx, p)
    if not refs.msg_id:
        refs.msg_id = _text(underlying, p, "OrgnlGrpInfAndCxl/OrgnlMsgId")
    case_id = _text(tx, p, "Case/Id") or _text(message, p, "Case/Id") or assignment_id
    transfer_id = _id(_original_transfer_id(refs.tx_id, refs.uetr, refs.msg_id),
                      "Undrlyg/TxInf/OrgnlTxId")
    code, additional = _reason(tx, p, "CxlRsnInf")
    return Recall(payer_participant_id=context.participant_id, transfer_id=transfer_id,
                  case_id=case_id, assignment_id=assignment_id, reason_code=code or "CUST",
                  additional=additional[:105], refs=refs)


def camt029(envelope: Envelope, context: Context) -> RecallAnswer:
    """The payee bank's answer to a recall the switch forwarded to it."""
    p = envelope.p
    message = envelope.message
    confirmation = _text(message, p, "Sts/Conf")
    details = message.findall(p("CxlDtls/TxInfAndSts"))
    if len(details) > limits.TRANSACTIONS_PER_MESSAGE_MAX:
        raise Invalid("FF01", "one CxlDtls/TxInfAndSts per message", "CxlDtls")
    tx = details[0] if details else None
    case_id = _text(message, p, "RslvdCase/Id")
    if tx is not None and not case_id:
        case_id = _text(tx, p, "RslvdCase/Id")
    if not case_id:
        raise Invalid("FF01", "RslvdCase/Id names the recall this answers", "RslvdCase")
    status = _text(tx, p, "TxCxlSts") if tx is not None else ""
    code, additional = _reason(tx, p, "CxlStsRsnInf") if tx is not None else ("", "")
    if not confirmation and not status:
        raise Invalid("FF01", "neither Sts/Conf nor TxCxlSts", "Sts")
    return RecallAnswer(case_id=case_id, confirmation=confirmation, status=status,
                        reason_code=code, additional=additional[:105],
                        assignment_id=_text(message, p, "Assgnmt/Id"))


def pain013(envelope: Envelope, context: Context) -> Submit:
    """A payee bank's request-to-pay to a payer named by proxy (or member id + account)."""
    p = envelope.p
    message = envelope.message
    header = message.find(p("GrpHdr"))
    msg_id = _text(header, p, "MsgId")
    created_ns = datetime_ns(header.findtext(p("CreDtTm")), "GrpHdr/CreDtTm")
    check_created(created_ns, context.now_ns, "GrpHdr/CreDtTm")
    if _text(header, p, "NbOfTxs") != "1":
        raise Invalid("FF01", "NbOfTxs must be 1", "GrpHdr/NbOfTxs")
    info = _single(message, p, "PmtInf", "PmtInf")
    tx = _single(info, p, "CdtTrfTx", "PmtInf/CdtTrfTx")
    request_id = _id(_text(info, p, "PmtInfId") or msg_id, "PmtInf/PmtInfId")
    _bind_agent(agent_member(tx, p, "CdtrAgt"), context.member, "CdtTrfTx/CdtrAgt")
    payer = party_from_account(info, p, "DbtrAcct", "DbtrAgt", context.members, "debtor")
    amount = tx.find(p("Amt/InstdAmt"))
    if amount is None:
        raise Invalid("FF01", "Amt/InstdAmt is required (no equivalent amounts)", "Amt")
    currency = amount.get("Ccy")
    value = amount_minor(amount.text, currency, "Amt/InstdAmt")
    expiry = info.findtext(p("XpryDt/DtTm"))
    if expiry is not None:
        expires_at_ns = datetime_ns(expiry, "PmtInf/XpryDt/DtTm")
    elif info.findtext(p("XpryDt/Dt")) is not None:
        expires_at_ns = (date_days(info.findtext(p("XpryDt/Dt")), "PmtInf/XpryDt/Dt") + 1
                         ) * NS_PER_DAY - 1
    else:
        expires_at_ns = created_ns + context.request_to_pay_expiry_ms * 1_000_000
    purpose = _joined(tx, p, "RmtInf/Ustrd")
    payee_account = account_id(tx, p, "CdtrAcct")
    request = _convert({
        "request_id": request_id, "payer": payer, "amount_minor": value,
        "currency": currency, "expires_at_ns": expires_at_ns,
        "payee_account_ref": payee_account,
        "end_to_end_id": _text(tx, p, "PmtId/EndToEndId"), "purpose": purpose[:140],
        "payee_user_ref": payee_account,
    }, RequestToPay)
    refs = OriginalRefs(msg_id, envelope.definition, _text(tx, p, "PmtId/InstrId"),
                        _text(tx, p, "PmtId/EndToEndId"), request_id,
                        _text(tx, p, "PmtId/UETR"), header.findtext(p("CreDtTm")).strip())
    return Submit(request, Passthrough(refs, None, "pain.013"))


def pain014(envelope: Envelope, context: Context):
    """A payer bank's decision on a request-to-pay the switch sent it (pain.013)."""
    p = envelope.p
    message = envelope.message
    header = message.find(p("GrpHdr"))
    msg_id = _text(header, p, "MsgId")
    created_ns = datetime_ns(header.findtext(p("CreDtTm")), "GrpHdr/CreDtTm")
    check_created(created_ns, context.now_ns, "GrpHdr/CreDtTm")
    original_msg = _text(message, p, "OrgnlGrpInfAndSts/OrgnlMsgId")
    original = context.sent(original_msg)
    if original is None:
        raise Invalid("NOOR", "the original pain.013 is not one the switch sent you",
                      "OrgnlGrpInfAndSts/OrgnlMsgId")
    infos = message.findall(p("OrgnlPmtInfAndSts"))
    if len(infos) != 1:
        raise Invalid("FF01", "one OrgnlPmtInfAndSts per message", "OrgnlPmtInfAndSts")
    info = infos[0]
    txs = info.findall(p("TxInfAndSts"))
    if len(txs) > 1:
        raise Invalid("FF01", "one TxInfAndSts per message", "TxInfAndSts")
    status = (_text(txs[0], p, "TxSts") if txs else "") or _text(info, p, "PmtInfSts") or \
        _text(message, p, "OrgnlGrpInfAndSts/GrpSts")
    if status in NOT_FINAL or status == "":
        return Ignore(f"status {status or 'none'} decides nothing")
    payee_id, request_id = original
    if status in ACCEPTED:
        # Approving creates a transfer: the payer bank's pain.014 MsgId names it (unique
        # per message of that bank, as every transfer id of a payer must be).
        return Submit(_convert({
            "payee_participant_id": payee_id, "request_id": request_id, "approved": True,
            "transfer_id": _id(msg_id, "GrpHdr/MsgId"),
            "expires_at_ns": created_ns + context.transfer_expiry_ms * 1_000_000,
        }, RequestToPayDecision))
    if status != "RJCT":
        raise Invalid("FF01", f"status {status} is not ACCP or RJCT", "TxInfAndSts/TxSts")
    return Submit(_convert({"payee_participant_id": payee_id, "request_id": request_id,
                            "approved": False}, RequestToPayDecision))


_DECODERS = {
    "pacs.008": pacs008, "pacs.002": pacs002, "pacs.004": pacs004, "pacs.028": pacs028,
    "camt.056": camt056, "camt.029": camt029, "pain.013": pain013, "pain.014": pain014,
}
assert set(_DECODERS) == {definition[:8] for definition in SUPPORTED_IN}
