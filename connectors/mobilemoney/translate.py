"""GSMA bodies -> the core's messages, and the core's outcomes -> GSMA bodies.

A payment (POST /transactions..., a batch row) becomes a `TransferRequest` built through
`msgspec.convert`, so every constraint of the core's types is checked: the credit party's
identifier names the payee alias (its type mapped by `wire.IDENTIFIER_ALIAS_TYPES`), the
debit party's first identifier is the payer's end-user reference (the wallet's own
customer, for the anti-enumeration buckets and for returns), the amount is converted
exactly to minor units. A refusal is a `Refusal` (a Ponte result, the GSMA code when the
connector found it itself, and a detail) and nothing is recorded.

It must never do I/O, and never forward a KYC field.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import msgspec

from connectors.mobilemoney import errors
from connectors.mobilemoney.wire import (
    IDENTIFIER_ALIAS_TYPES,
    PAYMENT_TYPES,
    AmountError,
    PartyEntry,
    TransactionRequest,
    amount_minor,
)
from switch.core import limits as core_limits
from switch.core.messages import ReturnRequest, TransferRequest
from switch.core.results import Result


class Refusal(NamedTuple):
    result: Result
    detail: str
    code: tuple[str, str] | None = None


def payee_alias(parties: list[PartyEntry] | None) -> tuple[str, str] | Refusal:
    """(alias type, alias value) from a credit party: its first identifier the directory
    can look up."""
    if not parties:
        return Refusal(Result.VALIDATION_ERROR, "creditParty is required",
                       errors.MANDATORY_VALUE)
    for entry in parties:
        alias_type = IDENTIFIER_ALIAS_TYPES.get(entry.key.lower())
        if alias_type is not None:
            return alias_type, entry.value
    keys = ",".join(entry.key for entry in parties)[:80]
    return Refusal(Result.VALIDATION_ERROR, f"no creditParty identifier type Ponte can "
                   f"route ({keys}); use msisdn, emailaddress, identityalias, accountid, "
                   "walletid, bankaccountno or iban", errors.IDENTIFIER_ERROR)


def payer_reference(parties: list[PartyEntry] | None) -> str | Refusal:
    if not parties:
        return Refusal(Result.VALIDATION_ERROR, "debitParty is required",
                       errors.MANDATORY_VALUE)
    value = parties[0].value
    if len(value) > core_limits.REFERENCE_LENGTH_MAX:
        return Refusal(Result.VALIDATION_ERROR, "debitParty value is longer than "
                       f"{core_limits.REFERENCE_LENGTH_MAX}")
    return value


def minor_amount(text: str, currency: str) -> int | Refusal:
    try:
        value = amount_minor(text, currency)
    except AmountError as error:
        return Refusal(Result.AMOUNT_INVALID, str(error), errors.NEGATIVE_VALUE
                       if text.startswith("-") else None)
    if not 1 <= value <= core_limits.AMOUNT_MINOR_MAX:
        return Refusal(Result.AMOUNT_INVALID, "amount must be positive and within bounds")
    return value


def payment(body: TransactionRequest, transaction_type: str | None, transfer_id: str,
            expires_at_ns: int) -> TransferRequest | Refusal:
    """The transfer a payment body asks for (type from the path, or the body's)."""
    kind = transaction_type or body.type
    if kind is None:
        return Refusal(Result.VALIDATION_ERROR, "type is required", errors.MANDATORY_VALUE)
    if kind not in PAYMENT_TYPES:
        return Refusal(Result.VALIDATION_ERROR, f"type {kind} is not a payment Ponte "
                       f"carries ({', '.join(PAYMENT_TYPES)})", errors.TRANSACTION_TYPE_ERROR)
    alias = payee_alias(body.credit_party)
    if type(alias) is Refusal:
        return alias
    payer = payer_reference(body.debit_party)
    if type(payer) is Refusal:
        return payer
    value = minor_amount(body.amount, body.currency)
    if type(value) is Refusal:
        return value
    try:
        return msgspec.convert({
            "transfer_id": transfer_id,
            "payee": {"alias_type": alias[0], "alias_value": alias[1]},
            "amount_minor": value, "currency": body.currency,
            "expires_at_ns": expires_at_ns,
            "end_to_end_id": body.requesting_organisation_transaction_reference[
                :core_limits.REFERENCE_LENGTH_MAX],
            "purpose": body.description_text[:core_limits.TEXT_LENGTH_MAX],
            "payer_account_ref": payer, "payer_user_ref": payer,
        }, TransferRequest)
    except msgspec.ValidationError as error:
        return Refusal(Result.VALIDATION_ERROR, str(error))


def reversal(transfer_id: str, original_payer: int, original_transfer_id: str,
             value_minor: int, expires_at_ns: int, reason: str) -> ReturnRequest | Refusal:
    try:
        return msgspec.convert({
            "transfer_id": transfer_id,
            "original": {"payer_participant_id": original_payer,
                         "transfer_id": original_transfer_id},
            "amount_minor": value_minor, "expires_at_ns": expires_at_ns,
            "reason": reason[:core_limits.TEXT_LENGTH_MAX]}, ReturnRequest)
    except msgspec.ValidationError as error:
        return Refusal(Result.VALIDATION_ERROR, str(error))


_NEGATIVE = re.compile(rb'"(?:amount|requestAmount)"\s*:\s*"\s*-')


def decode_error(error: Exception, body: bytes) -> Refusal:
    """A body that is not JSON, or breaks its schema: a negative amount named as such."""
    text = str(error)[:200]
    if isinstance(error, msgspec.ValidationError):
        if "mount`" in text and _NEGATIVE.search(body) is not None:
            return Refusal(Result.VALIDATION_ERROR, text, errors.NEGATIVE_VALUE)
        return Refusal(Result.VALIDATION_ERROR, text)
    return Refusal(Result.MALFORMED_SYNTAX, text)
