"""FSPIOP bodies as msgspec Structs, and the grammar of their fields, converted once to
Ponte's (amounts in minor units, times in UTC nanoseconds, party types to alias types).

Bodies the hub acts on are decoded strictly with the spec's patterns; bodies it only
forwards are decoded for the fields it routes by and passed on as the exact bytes received
(their signature covers those bytes). Nothing here does I/O.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from connectors.fspiop import limits
from switch.core.money import exponent

_W = dict(frozen=True, kw_only=True, omit_defaults=True)
_STRICT = dict(_W, forbid_unknown_fields=True)

CORRELATION_ID_PATTERN = (
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-7][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$(?!\n)")
CorrelationId = Annotated[str, Meta(pattern=CORRELATION_ID_PATTERN)]
FspId = Annotated[str, Meta(min_length=1, max_length=limits.FSP_ID_LENGTH_MAX,
                            pattern=r"^[A-Za-z0-9._-]+$(?!\n)")]
# A DFSP's JWS public key (PEM; RSA for RS256); "" for none. Parsed when registered.
PublicKeyPem = Annotated[str, Meta(max_length=limits.PUBLIC_KEY_PEM_BYTES_MAX)]
AmountText = Annotated[str, Meta(max_length=32,
                                 pattern=r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$(?!\n)")]
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$(?!\n)")]
IlpCondition = Annotated[str, Meta(pattern=r"^[A-Za-z0-9-_]{43}$(?!\n)", max_length=48)]
IlpFulfilment = IlpCondition
IlpPacket = Annotated[str, Meta(min_length=1, max_length=limits.ILP_PACKET_LENGTH_MAX,
                                pattern=r"^[A-Za-z0-9-_]+[=]{0,2}$(?!\n)")]
DateTimeText = Annotated[str, Meta(max_length=40, pattern=(
    r"^(?:[1-9]\d{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-"
    r"(?:29|30)|(?:0[13578]|1[02])-31)|(?:[1-9]\d(?:0[48]|[2468][048]|[13579][26])|"
    r"(?:[2468][048]|[13579][26])00)-02-29)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:(\.\d{3}))(?:Z|[+-][01]\d:[0-5]\d)$(?!\n)"))]
PartyIdentifier = Annotated[str, Meta(min_length=1,
                                      max_length=limits.PARTY_IDENTIFIER_LENGTH_MAX)]
ErrorCode = Annotated[str, Meta(pattern=r"^[1-9]\d{3}$(?!\n)")]
ErrorDescription = Annotated[str, Meta(min_length=1,
                                       max_length=limits.ERROR_DESCRIPTION_LENGTH_MAX)]
PartyIdTypeName = Literal["MSISDN", "EMAIL", "PERSONAL_ID", "BUSINESS", "DEVICE",
                          "ACCOUNT_ID", "IBAN", "ALIAS", "CONSENT", "THIRD_PARTY_LINK"]
TransferStateName = Literal["RECEIVED", "RESERVED", "COMMITTED", "ABORTED"]

# FSPIOP party types the hub maps onto Ponte's directory. PERSONAL_ID is not offered: the
# lookup would carry a raw national ID through the hub to the payee DFSP (the project's
# rule: nothing raw about a person is forwarded).
PARTY_TO_ALIAS: dict[str, str] = {
    "MSISDN": "MSISDN", "EMAIL": "EMAIL", "ACCOUNT_ID": "ACCOUNT", "IBAN": "ACCOUNT",
    "ALIAS": "HANDLE",
}
ALIAS_TO_PARTY: dict[str, str] = {"MSISDN": "MSISDN", "EMAIL": "EMAIL",
                                  "ACCOUNT": "ACCOUNT_ID", "HANDLE": "ALIAS",
                                  "RANDOM": "ALIAS"}


class Extension(msgspec.Struct, **_STRICT):
    key: Annotated[str, Meta(min_length=1, max_length=32)]
    value: Annotated[str, Meta(min_length=1, max_length=128)]


class ExtensionList(msgspec.Struct, **_STRICT):
    extension: Annotated[list[Extension], Meta(min_length=1, max_length=16)]


class Money(msgspec.Struct, **_STRICT):
    currency: CurrencyCode
    amount: AmountText


class PartyIdInfo(msgspec.Struct, **_W):
    partyIdType: PartyIdTypeName  # noqa: N815 - the spec's names throughout
    partyIdentifier: PartyIdentifier  # noqa: N815
    partySubIdOrType: Annotated[str, Meta(min_length=1, max_length=128)] | None = None  # noqa: N815
    fspId: FspId | None = None  # noqa: N815


class TransfersPostRequest(msgspec.Struct, **_STRICT):
    transferId: CorrelationId  # noqa: N815
    payeeFsp: FspId  # noqa: N815
    payerFsp: FspId  # noqa: N815
    amount: Money
    ilpPacket: IlpPacket  # noqa: N815
    condition: IlpCondition
    expiration: DateTimeText
    extensionList: ExtensionList | None = None  # noqa: N815


class TransfersIDPutResponse(msgspec.Struct, **_STRICT):
    transferState: TransferStateName  # noqa: N815
    fulfilment: IlpFulfilment | None = None
    completedTimestamp: DateTimeText | None = None  # noqa: N815
    extensionList: ExtensionList | None = None  # noqa: N815


class TransfersIDPatchResponse(msgspec.Struct, **_STRICT):
    completedTimestamp: DateTimeText  # noqa: N815
    transferState: TransferStateName  # noqa: N815
    extensionList: ExtensionList | None = None  # noqa: N815


class ErrorInformation(msgspec.Struct, **_STRICT):
    errorCode: ErrorCode  # noqa: N815
    errorDescription: ErrorDescription  # noqa: N815
    extensionList: ExtensionList | None = None  # noqa: N815


class ErrorInformationObject(msgspec.Struct, **_STRICT):
    errorInformation: ErrorInformation  # noqa: N815


class QuoteParty(msgspec.Struct, **_W):
    """The part of a quote's Party the hub routes by (forwarded bodies keep the rest)."""

    partyIdInfo: PartyIdInfo  # noqa: N815


class QuotesPostRequest(msgspec.Struct, **_W):
    quoteId: CorrelationId  # noqa: N815
    transactionId: CorrelationId  # noqa: N815
    payee: QuoteParty
    payer: QuoteParty
    amountType: Literal["SEND", "RECEIVE"]  # noqa: N815
    amount: Money
    transactionType: dict  # noqa: N815
    transactionRequestId: CorrelationId | None = None  # noqa: N815
    expiration: DateTimeText | None = None
    note: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class QuotesIDPutResponse(msgspec.Struct, **_W):
    transferAmount: Money  # noqa: N815
    expiration: DateTimeText
    ilpPacket: IlpPacket  # noqa: N815
    condition: IlpCondition
    payeeReceiveAmount: Money | None = None  # noqa: N815
    payeeFspFee: Money | None = None  # noqa: N815
    payeeFspCommission: Money | None = None  # noqa: N815


class PartyResult(msgspec.Struct, **_W):
    partyIdInfo: PartyIdInfo  # noqa: N815


class PartiesTypeIDPutResponse(msgspec.Struct, **_W):
    party: PartyResult


class ParticipantsTypeIDSubIDPostRequest(msgspec.Struct, **_STRICT):
    fspId: FspId  # noqa: N815
    currency: CurrencyCode | None = None
    extensionList: ExtensionList | None = None  # noqa: N815


class TransactionRequestsPostRequest(msgspec.Struct, **_W):
    transactionRequestId: CorrelationId  # noqa: N815
    payee: QuoteParty
    payer: PartyIdInfo
    amount: Money
    transactionType: dict  # noqa: N815
    note: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    expiration: DateTimeText | None = None


class TransactionRequestsIDPutResponse(msgspec.Struct, **_STRICT):
    transactionRequestState: Literal["RECEIVED", "PENDING", "ACCEPTED", "REJECTED"]  # noqa: N815
    transactionId: CorrelationId | None = None  # noqa: N815
    extensionList: ExtensionList | None = None  # noqa: N815


# -- conversions -------------------------------------------------------------------------


class AmountError(ValueError):
    """An FSPIOP amount that is not an exact number of the currency's minor units."""


def amount_minor(money: Money) -> int:
    """"100.5" EUR -> 10050. More decimals than the currency has: AmountError."""
    whole, _, fraction = money.amount.partition(".")
    digits = exponent(money.currency)
    if len(fraction) > digits:
        raise AmountError(f"{money.currency} has {digits} decimal places")
    return int(whole) * 10 ** digits + int(fraction.ljust(digits, "0") or 0)


def amount_text(amount_minor_value: int, currency: str) -> str:
    """10050 EUR -> "100.5" (the spec's grammar: no trailing zeros, no trailing dot)."""
    digits = exponent(currency)
    whole, fraction = divmod(amount_minor_value, 10 ** digits) if digits else (
        amount_minor_value, 0)
    if not fraction:
        return str(whole)
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{3})(Z|[+-]\d{2}:\d{2})$")


def time_ns(text: str) -> int:
    """An FSPIOP DateTime ("2026-12-04T15:11:01.123Z") as UTC nanoseconds."""
    match = _TIME.match(text)
    if match is None:
        raise ValueError("not an FSPIOP DateTime")
    zone = match.group(3)
    moment = datetime.datetime.fromisoformat(
        match.group(1) + ("+00:00" if zone == "Z" else zone))
    return (int(moment.timestamp()) * 1_000_000_000 + int(match.group(2)) * 1_000_000)


def time_text(time_ns_value: int) -> str:
    """UTC nanoseconds as an FSPIOP DateTime with milliseconds and Z."""
    seconds, rest = divmod(time_ns_value, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1_000_000:03d}Z"


def alias_value(party_type: str, identifier: str) -> str:
    """The directory's spelling of an FSPIOP identifier: MSISDNs are E.164 with "+" in
    Ponte and usually written without it in Mojaloop."""
    if party_type == "MSISDN" and identifier[:1] != "+":
        return "+" + identifier
    return identifier
