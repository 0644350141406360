"""The GSMA Mobile Money API 1.1.2 bodies this connector reads and writes, as msgspec Structs,
and the few conversions between them and the core's grammar (amounts, parties, dates, ids).

Field names are the spec's (camelCase on the wire, `rename="camel"`; the spec's two
lower-case oddities, `errordescription` and `batchdescription`, are named explicitly).
Every request Struct refuses unknown fields and carries the spec's bounds in its types, so
a schema-invalid body is refused by decoding, before anything is recorded. Optional spec
fields the switch does not use (KYC, international transfer details) are accepted as raw
JSON and never read, stored or forwarded: nothing about a person beyond the party
identifiers leaves the request.

Money on this API is a decimal string of major units ("15.21"); the switch holds integers
of minor units. `amount_minor` and `amount_text` convert exactly with the currency's ISO
4217 exponent, and `amount_text` writes the spec's canonical form (no trailing zeros: the
spec's pattern refuses "15.20"). This module must never import anything that does I/O.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from connectors.mobilemoney import limits
from switch.core.money import exponent
from switch.core.messages import AliasType

# -- scalars ------------------------------------------------------------------------------

UUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$(?!\n)"
_uuid_match = re.compile(UUID_PATTERN).match
# The spec's amount: a decimal without sign, exponent or trailing zeros.
AMOUNT_PATTERN = r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$(?!\n)"
AmountText = Annotated[str, Meta(min_length=1, max_length=23, pattern=AMOUNT_PATTERN)]
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$(?!\n)")]
Text256 = Annotated[str, Meta(max_length=limits.TEXT_256_MAX)]
Key256 = Annotated[str, Meta(min_length=1, max_length=limits.TEXT_256_MAX)]
DescriptionText = Annotated[str, Meta(max_length=limits.DESCRIPTION_TEXT_MAX)]
Lei = Annotated[str, Meta(max_length=20, pattern=r"^([A-Z0-9]{4}00[A-Z0-9]{12}\d{2})?$(?!\n)")]
GeoCode = Annotated[str, Meta(max_length=limits.TEXT_256_MAX, pattern=(
    r"^((-?(90|(\d|[1-8]\d)(\.\d{1,6}){0,1}))\,{1}(-?(180|(\d|\d\d|1[0-7]\d)"
    r"(\.\d{1,6}){0,1})))?$(?!\n)"))]

# The transaction types a wallet may send through Ponte, and the ones Ponte may use to
# credit a wallet: all are push payments from the debit party to the credit party.
PAYMENT_TYPES = ("transfer", "inttransfer", "merchantpay", "disbursement")
PaymentType = Literal["transfer", "inttransfer", "merchantpay", "disbursement"]
# Every value of the spec's `type` enum (a request naming another one is well formed, and
# refused with transactionTypeError rather than as a malformed body).
TransactionType = Literal["billpay", "deposit", "disbursement", "transfer", "merchantpay",
                          "inttransfer", "adjustment", "reversal", "withdrawal"]

# The spec's account identifier types (the `identifierType` path enum and the party keys)
# that name something the directory holds, and the alias type each is looked up as. The
# other identifier types of the spec are well formed and answered `identifierError`.
IDENTIFIER_ALIAS_TYPES: dict[str, str] = {
    "msisdn": AliasType.MSISDN.value,
    "emailaddress": AliasType.EMAIL.value,
    "identityalias": AliasType.HANDLE.value,
    "accountid": AliasType.ACCOUNT.value,
    "walletid": AliasType.ACCOUNT.value,
    "bankaccountno": AliasType.ACCOUNT.value,
    "iban": AliasType.ACCOUNT.value,
}
ALIAS_IDENTIFIER_TYPES: dict[str, str] = {
    AliasType.MSISDN.value: "msisdn", AliasType.EMAIL.value: "emailaddress",
    AliasType.HANDLE.value: "identityalias", AliasType.ACCOUNT.value: "accountid",
}
# The spec's identifierType enum, in its order.
IDENTIFIER_TYPES = ("accountid", "msisdn", "walletid", "linkref", "consumerno",
                    "serviceprovider", "storeid", "accountcategory", "bankaccountno",
                    "accountrank", "identityalias", "iban", "swiftbic", "sortcode",
                    "organisationid", "bankname", "bankaccounttitle", "username",
                    "emailaddress", "mandatereference")
assert set(IDENTIFIER_ALIAS_TYPES) <= set(IDENTIFIER_TYPES)

_REQUEST = dict(frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel")
_ANSWER = dict(frozen=True, kw_only=True, rename="camel", omit_defaults=True)


# -- shared pieces --------------------------------------------------------------------------


class PartyEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One identifier of a debit or credit party: {"key": "msisdn", "value": "+254..."}."""

    key: Key256
    value: Key256


Parties = Annotated[list[PartyEntry], Meta(min_length=1, max_length=limits.PARTIES_MAX)]


class Metadata(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: Key256
    value: Key256


MetadataList = Annotated[list[Metadata], Meta(max_length=limits.METADATA_MAX)]


class Fee(msgspec.Struct, **_REQUEST):
    fee_type: Key256
    fee_amount: AmountText
    fee_currency: CurrencyCode


Fees = Annotated[list[Fee], Meta(min_length=1, max_length=20)]


# -- requests the hub reads (and Ponte sends a wallet) ---------------------------------------


class TransactionRequest(msgspec.Struct, **_REQUEST):
    """requestTransaction (POST /transactions, batch rows: `type` required there) and
    requestTransactionType (POST /transactions/type/{transactionType}: the type is in the
    path). The switch reads amount, currency, the parties, descriptionText and the
    requesting organisation's reference; the other spec fields are checked and dropped."""

    amount: AmountText
    currency: CurrencyCode
    type: TransactionType | None = None
    sub_type: Text256 = ""
    debit_party: Parties | None = None
    credit_party: Parties | None = None
    description_text: DescriptionText = ""
    request_date: datetime.datetime | None = None
    requesting_organisation_transaction_reference: Text256 = ""
    one_time_code: Text256 = ""
    geo_code: GeoCode = ""
    sender_kyc: msgspec.Raw = msgspec.Raw()  # accepted, never read: KYC stays with the wallet
    recipient_kyc: msgspec.Raw = msgspec.Raw()
    original_transaction_reference: Text256 = ""
    servicing_identity: Text256 = ""
    fees: Fees | None = None
    requesting_lei: Lei = ""
    receiving_lei: Lei = ""
    metadata: MetadataList | None = None
    international_transfer_information: msgspec.Raw = msgspec.Raw()


class ReversalRequest(msgspec.Struct, **_REQUEST):
    """requestReversal: POST /transactions/{transactionReference}/reversals. Without an
    amount it asks for the whole original amount, not what is left of it: after a partial
    reversal the core refuses it (RETURN_EXCEEDS_ORIGINAL, the cap on the sum)."""

    type: Literal["reversal", "adjustment"]
    amount: AmountText | None = None
    currency: CurrencyCode | None = None
    sub_type: Text256 = ""
    description_text: DescriptionText = ""
    request_date: datetime.datetime | None = None
    geo_code: GeoCode = ""
    requesting_organisation_transaction_reference: Text256 = ""
    debit_party: Parties | None = None
    credit_party: Parties | None = None
    requesting_lei: Lei = ""
    receiving_lei: Lei = ""
    servicing_identity: Text256 = ""
    fees: Fees | None = None
    metadata: MetadataList | None = None


class BatchRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                   rename="camel"):
    """requestBatchTransaction: POST /batchtransactions. Rows are decoded one by one (a bad
    row is a rejection of the batch, not a refusal of it), so they are kept raw here."""

    transactions: Annotated[list[msgspec.Raw], Meta(min_length=1,
                                                      max_length=limits.BATCH_ROWS_MAX)]
    batch_title: Text256 = ""
    batch_description: Text256 = msgspec.field(default="", name="batchdescription")
    scheduled_start_date: datetime.datetime | None = None
    batch_status: Literal["created", "approved", "completed"] | None = None


class QuotationRequest(msgspec.Struct, **_REQUEST):
    """requestQuotation: POST /quotations."""

    request_amount: AmountText
    request_currency: CurrencyCode
    request_date: datetime.datetime
    debit_party: Parties
    credit_party: Parties
    sender_kyc: msgspec.Raw = msgspec.Raw()
    recipient_kyc: msgspec.Raw = msgspec.Raw()
    type: TransactionType | None = None
    sub_type: Text256 = ""
    chosen_delivery_method: Literal["directtoaccount", "agent", "personaldelivery"] | None = None
    metadata: MetadataList | None = None


# -- answers and callbacks -------------------------------------------------------------------


class ErrorObject(msgspec.Struct, **_ANSWER):
    """errorObject: every refusal, failure callback and failed request state."""

    error_category: str
    error_code: str
    error_description: str = msgspec.field(default="", name="errordescription")
    error_date_time: str = ""
    error_parameters: list[Metadata] | None = None


class RequestState(msgspec.Struct, **_ANSWER):
    """requestStateObject: the 202 answer of an asynchronous request, and what polling
    GET /requeststates/{serverCorrelationId} returns."""

    server_correlation_id: str
    status: Literal["pending", "completed", "failed"]
    notification_method: Literal["callback", "polling"]
    object_reference: str = ""
    pending_reason: str = ""
    expiry_time: str = ""
    error: ErrorObject | None = None


class QuoteFee(msgspec.Struct, **_ANSWER):
    fee_type: str
    fee_amount: str
    fee_currency: str


class TransactionAnswer(msgspec.Struct, **_ANSWER):
    """responseTransaction (GET /transactions/{transactionReference}, the success callback)."""

    amount: str
    currency: str
    type: str
    transaction_reference: str
    transaction_status: str
    debit_party: list[PartyEntry]
    credit_party: list[PartyEntry]
    description_text: str = ""
    requesting_organisation_transaction_reference: str = ""
    creation_date: str = ""
    modification_date: str = ""
    fees: list[QuoteFee] | None = None  # the scheme fee the payer paid, when not zero
    metadata: list[Metadata] | None = None


class ReversalAnswer(msgspec.Struct, **_ANSWER):
    """responseReversal (the reversal's success callback)."""

    type: str
    original_transaction_reference: str
    transaction_reference: str
    transaction_status: str
    amount: str = ""
    currency: str = ""
    creation_date: str = ""
    modification_date: str = ""


class BatchAnswer(msgspec.Struct, **_ANSWER):
    """responseBatchTransaction: GET /batchtransactions/{batchId} and the batch callback.
    The spec requires approvalDate and completionDate even while the batch runs: Ponte
    approves a batch when it accepts it, and until it completes completionDate is the
    time of its latest row outcome (docs/mobilemoney.md)."""

    batch_id: str
    batch_status: Literal["created", "approved", "completed"]
    creation_date: str
    approval_date: str
    completion_date: str
    batch_title: str = ""
    batch_description: str = msgspec.field(default="", name="batchdescription")
    processing_flag: bool = False
    rejection_count: int = 0
    parsing_success_count: int = 0
    completed_count: int = 0


class BatchRejection(msgspec.Struct, **_ANSWER):
    """responseBatchTransactionRejection."""

    rejection_date: str
    rejection_reason: str
    debit_party: list[PartyEntry]
    credit_party: list[PartyEntry]
    transaction_reference: str = ""
    requesting_organisation_transaction_reference: str = ""


class BatchCompletion(msgspec.Struct, **_ANSWER):
    """responseBatchTransactionCompletion."""

    transaction_reference: str
    completion_date: str
    link: str
    debit_party: list[PartyEntry]
    credit_party: list[PartyEntry]
    requesting_organisation_transaction_reference: str = ""


class AccountName(msgspec.Struct, **_ANSWER):
    """responseAccountName: the masked name the directory gives for an alias."""

    name: dict[str, str]


class Quote(msgspec.Struct, **_ANSWER):
    quote_id: str
    sending_amount: str
    sending_currency: str
    receiving_amount: str
    receiving_currency: str
    quote_expiry_time: str = ""
    receiving_service_provider: str = ""
    fees: list[QuoteFee] | None = None


class QuotationAnswer(msgspec.Struct, **_ANSWER):
    """responseQuotation: POST /quotations answers at once (201)."""

    quotation_reference: str
    request_date: str
    debit_party: list[PartyEntry]
    credit_party: list[PartyEntry]
    request_amount: str
    request_currency: str
    quotation_status: Literal["pending", "rejected", "completed"] = "completed"
    creation_date: str = ""
    type: str = ""
    quotes: list[Quote] | None = None


class Heartbeat(msgspec.Struct, **_ANSWER):
    service_status: Literal["available", "unavailable", "degraded"]


class ResponseLink(msgspec.Struct, **_ANSWER):
    """responseResponse: GET /responses/{clientCorrelationId}."""

    link: str


# What a wallet's callback to Ponte carries (Ponte -> wallet credits): the final
# representation of the transaction, or an error object. Decoded leniently (a wallet's own
# fields pass), since only the status and reference decide anything.
class WalletTransaction(msgspec.Struct, kw_only=True, rename="camel"):
    transaction_status: Key256
    transaction_reference: Text256 = ""


class WalletError(msgspec.Struct, kw_only=True, rename="camel"):
    error_category: Key256
    error_code: Key256
    error_description: Text256 = msgspec.field(default="", name="errordescription")


class WalletRequestState(msgspec.Struct, kw_only=True, rename="camel"):
    server_correlation_id: Annotated[str, Meta(pattern=UUID_PATTERN)]
    status: Literal["pending", "completed", "failed"]
    notification_method: Literal["callback", "polling"] = "callback"
    object_reference: Text256 = ""
    error: WalletError | None = None


# -- conversions ---------------------------------------------------------------------------


class AmountError(ValueError):
    """An amount that is well formed for the spec but not for the switch (too many decimals
    for its currency, zero, out of range)."""


def amount_minor(text: str, currency: str) -> int:
    """"15.21", "KES" -> 1521. Exact: AmountError for more decimals than the currency has."""
    whole, _, fraction = text.partition(".")
    digits = exponent(currency)
    if len(fraction) > digits:
        raise AmountError(f"{currency} has {digits} decimal places")
    return int(whole) * 10 ** digits + (int(fraction.ljust(digits, "0")) if digits else 0)


def amount_text(amount_minor_value: int, currency: str) -> str:
    """1520, "KES" -> "15.2": the spec's canonical amount (no trailing zeros)."""
    assert amount_minor_value >= 0
    digits = exponent(currency)
    if not digits:
        return str(amount_minor_value)
    whole, fraction = divmod(amount_minor_value, 10 ** digits)
    fraction_text = f"{fraction:0{digits}d}".rstrip("0")
    return f"{whole}.{fraction_text}" if fraction_text else str(whole)


def uuid_valid(text: str) -> bool:
    return len(text) == 36 and _uuid_match(text) is not None


def derived_uuid(*parts: str) -> str:
    """A UUID-shaped id derived from `parts` (the same parts give the same id), so a resend
    after a restart gets the same serverCorrelationId, and a credit re-sent to a wallet the
    same X-CorrelationID."""
    digest = bytearray(hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5 layout (name-based)
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


_date_cache: list = [0, ""]


def date_time(now_ns: int) -> str:
    """RFC 3339 UTC with milliseconds ("2024-05-01T12:00:00.123Z"), the spec's date-time."""
    ms = now_ns // 1_000_000
    if _date_cache[0] == ms:
        return _date_cache[1]
    text = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    _date_cache[0] = ms
    _date_cache[1] = text
    return text


def transaction_reference(payer_participant_id: int, transfer_id: str) -> str:
    """The transactionReference of a Ponte transfer: transfer ids are scoped by their payer."""
    return f"{payer_participant_id}.{transfer_id}"


def parse_transaction_reference(reference: str) -> tuple[int, str] | None:
    """(payer participant id, transfer id), or None when it is not one of Ponte's."""
    payer, dot, transfer_id = reference.partition(".")
    if not dot or not payer.isdigit() or len(payer) > 8 or not transfer_id:
        return None
    return int(payer), transfer_id
