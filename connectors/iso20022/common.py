"""What the inbound and outbound mappings share: namespaces, member ids, amounts in minor
units, ISO dates and times, deterministic message ids, and the typed refusal `Invalid`.

Pure functions and small tables; no I/O, no clock (times are arguments).
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import date, datetime, timezone

from connectors.iso20022.xml import NS_PREFIX

ENVELOPE_NS = "urn:ponte:xsd:envelope"  # <Envelope>: one AppHdr + one Document
BATCH_NS = "urn:ponte:xsd:batch"  # <Batch>: Envelope elements, in order
HEAD_NS = NS_PREFIX + "head.001.001.02"

# ISO 4217 minor-unit exponents that are not 2 (the rest use 2).
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}
_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,17})(?:\.([0-9]{1,5}))?$(?!\n)")
# XML 1.0 cannot carry C0 controls (but tab, newline, return) nor U+FFFE/U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


class Invalid(Exception):
    """A message that fails its schema or the scheme's rules: answered with an admi.002
    (`code` is its RjctgPtyRsn, an ISO reason code) and never submitted."""

    def __init__(self, code: str, detail: str, location: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.location = location


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def amount_minor(text: str, currency: str, location: str) -> int:
    """An ISO decimal amount as integer minor units of `currency`; Invalid when it has more
    fraction digits than the currency or is not a plain decimal."""
    found = _AMOUNT.match(text.strip())
    if found is None:
        raise Invalid("AM12", f"amount {text!r} is not a decimal", location)
    whole, fraction = found.group(1), found.group(2) or ""
    digits = exponent(currency)
    fraction = fraction.rstrip("0")
    if len(fraction) > digits:
        raise Invalid("AM12", f"amount {text} has more decimals than {currency} ({digits})",
                      location)
    value = int(whole) * 10**digits + (int(fraction.ljust(digits, "0")) if digits else 0)
    if value <= 0:
        raise Invalid("AM12", "amount must be more than zero", location)
    return value


def amount_text(amount_minor: int, currency: str) -> str:
    digits = exponent(currency)
    if digits == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**digits)
    return f"{whole}.{fraction:0{digits}d}"


def datetime_ns(text: str, location: str) -> int:
    """An ISODateTime (xs:dateTime) as UTC ns; without an offset it is read as UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("DT01", f"{text!r} is not an ISO date-time", location) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def date_days(text: str, location: str) -> int:
    """An ISODate as days since the epoch."""
    try:
        return date.fromisoformat(text.strip()).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise Invalid("DT01", f"{text!r} is not an ISO date", location) from None


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
NS_PER_DAY = 86_400 * 10**9


class Clock:
    """Formats the switch's time for messages; caches the text of the current second."""

    __slots__ = ("_second", "_text", "_date")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""
        self._date = ""

    def _refresh(self, now_ns: int) -> None:
        second = now_ns // 10**9
        if second != self._second:
            moment = datetime.fromtimestamp(second, timezone.utc)
            self._second = second
            self._text = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._date = moment.strftime("%Y-%m-%d")

    def datetime(self, now_ns: int) -> str:
        self._refresh(now_ns)
        return f"{self._text}.{now_ns // 1_000_000 % 1000:03d}Z"

    def date(self, now_ns: int) -> str:
        self._refresh(now_ns)
        return self._date


def message_id(*parts) -> str:
    """A deterministic Max35Text id for an outbound message: the same message (a resend,
    a redelivery after a restart) always carries the same BizMsgIdr/MsgId, so a bank
    applies it exactly once."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=20).digest()
    return "P" + base64.b32encode(digest).decode().rstrip("=")


def uetr_for(*parts) -> str:
    """A deterministic UUIDv4-shaped UETR for a transfer that came without one."""
    digest = bytearray(hashlib.blake2b("\x1f".join(map(str, parts)).encode(),
                                       digest_size=16).digest())
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def xml_text(text: str, length_max: int = 0) -> str:
    """`text` as XML character data: escaped, without characters XML cannot carry, cut to
    `length_max` characters when given (ISO MaxNText)."""
    if _NOT_XML.search(text):
        text = _NOT_XML.sub("?", text)
    if length_max and len(text) > length_max:
        text = text[:length_max]
    if "&" in text or "<" in text or ">" in text or '"' in text:
        text = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                .replace('"', "&quot;"))
    return text


class Members:
    """ISO member ids of participants, and the switch's own. A bank's id is the clearing
    system member id (or BIC) configured for it; any other participant is named by its
    Ponte participant id in decimal. Member ids are compared as written (case matters for
    MmbId, BICs are upper-case by their pattern)."""

    def __init__(self, switch_member_id: str, members: dict[int, tuple[str, ...]]) -> None:
        self.switch = switch_member_id
        self._by_participant = {pid: ids[0] for pid, ids in members.items()}
        self._by_member: dict[str, int] = {}
        for participant_id, ids in members.items():
            for member_id in ids:
                assert member_id not in self._by_member, member_id
                assert member_id != switch_member_id
                self._by_member[member_id] = participant_id

    def member(self, participant_id: int) -> str:
        found = self._by_participant.get(participant_id)
        return found if found is not None else str(participant_id)

    def participant(self, member_id: str) -> int | None:
        found = self._by_member.get(member_id)
        if found is not None:
            return found
        if member_id.isdigit() and len(member_id) <= 8 and member_id[0] != "0":
            return int(member_id)
        return None

    def is_switch(self, member_id: str) -> bool:
        return member_id == self.switch
