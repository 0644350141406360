"""G2P Connect request bodies (mapper core API 1.0.0, disbursement core API 1.0.0), as
msgspec Structs: the shapes and bounds the connector accepts. One decoder per endpoint;
unknown fields are refused, like everywhere in Ponte. Fields of the spec the switch does not
act on (names, phone numbers, locale, meta) are accepted and dropped: they are never
stored, logged or forwarded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import Meta

from switch.g2p import limits
from switch.g2p.types import TransactionId

_BODY = dict(frozen=True, kw_only=True, forbid_unknown_fields=True)

ReferenceId = Annotated[str, Meta(min_length=1, max_length=limits.REFERENCE_ID_LENGTH_MAX)]
Text = Annotated[str, Meta(max_length=999)]
Fa = Annotated[str, Meta(max_length=limits.FA_LENGTH_MAX)]
Short = Annotated[str, Meta(max_length=256)]


class Header(msgspec.Struct, **_BODY):
    """MsgHeader_V1.0.0."""

    message_id: Annotated[str, Meta(min_length=1, max_length=99)]
    message_ts: Short
    action: Annotated[str, Meta(max_length=32)]
    sender_id: Short
    total_count: Annotated[int, Meta(ge=0, le=limits.BATCH_ROWS_MAX)]
    version: Annotated[str, Meta(max_length=16)] = "1.0.0"
    sender_uri: Short = ""
    receiver_id: Short = ""
    is_msg_encrypted: bool = False
    meta: dict[str, Any] | None = None


class AttributeNameValue(msgspec.Struct, **_BODY):
    name: Short
    value: Union[str, int, float, bool, dict[str, Any]]


AdditionalInfo = Annotated[list[AttributeNameValue], Meta(max_length=16)]


# -- mapper ----------------------------------------------------------------------------


class LinkItem(msgspec.Struct, **_BODY):
    reference_id: ReferenceId
    timestamp: Short
    id: Annotated[str, Meta(max_length=limits.FA_LENGTH_MAX)]
    fa: Fa
    name: Text = ""
    phone_number: Short = ""
    additional_info: AdditionalInfo | None = None
    locale: Annotated[str, Meta(max_length=8)] = ""


class LinkRequest(msgspec.Struct, **_BODY):
    transaction_id: TransactionId
    link_request: Annotated[list[LinkItem], Meta(min_length=1, max_length=limits.MAPPER_ITEMS_MAX)]


class UpdateRequest(msgspec.Struct, **_BODY):
    transaction_id: TransactionId
    update_request: Annotated[list[LinkItem], Meta(min_length=1,
                                                    max_length=limits.MAPPER_ITEMS_MAX)]


class UnlinkItem(msgspec.Struct, **_BODY):
    reference_id: ReferenceId
    timestamp: Short
    id: Annotated[str, Meta(max_length=limits.FA_LENGTH_MAX)]
    fa: Fa = ""
    additional_info: AdditionalInfo | None = None
    locale: Annotated[str, Meta(max_length=8)] = ""


class UnlinkRequest(msgspec.Struct, **_BODY):
    transaction_id: TransactionId
    unlink_request: Annotated[list[UnlinkItem], Meta(min_length=1,
                                                      max_length=limits.MAPPER_ITEMS_MAX)]


class ResolveItem(msgspec.Struct, **_BODY):
    reference_id: ReferenceId
    timestamp: Short
    fa: Fa = ""
    id: Annotated[str, Meta(max_length=limits.FA_LENGTH_MAX)] = ""
    name: Text = ""
    scope: Literal["yes_no", "details"] = "yes_no"
    additional_info: AdditionalInfo | None = None
    locale: Annotated[str, Meta(max_length=8)] = ""


class ResolveRequest(msgspec.Struct, **_BODY):
    transaction_id: TransactionId
    resolve_request: Annotated[list[ResolveItem], Meta(min_length=1,
                                                        max_length=limits.MAPPER_ITEMS_MAX)]


class TxnStatusQuery(msgspec.Struct, **_BODY):
    reference_id: ReferenceId
    txn_type: Literal["link", "resolve", "update", "unlink", "disburse", "search"]
    attribute_type: Literal["transaction_id", "reference_id_list", "correlation_id"]
    attribute_value: Union[str, Annotated[list[ReferenceId],
                                          Meta(max_length=limits.REFERENCE_LIST_MAX)]]
    locale: Annotated[str, Meta(max_length=8)] = ""


class TxnStatusRequest(msgspec.Struct, **_BODY):
    transaction_id: TransactionId
    txnstatus_request: TxnStatusQuery


# -- disbursement ----------------------------------------------------------------------


class Disbursement(msgspec.Struct, **_BODY):
    reference_id: ReferenceId
    payer_fa: Fa
    payee_fa: Fa
    amount: Annotated[str, Meta(max_length=24)]
    scheduled_timestamp: Short = ""
    payer_name: Text = ""
    payee_name: Text = ""
    note: Annotated[str, Meta(max_length=limits.NOTE_LENGTH_MAX)] = ""
    purpose: Annotated[str, Meta(max_length=99)] = ""
    instruction: Text = ""
    meta: dict[str, Any] | None = None
    currency_code: Annotated[str, Meta(max_length=3)] = ""
    locale: Annotated[str, Meta(max_length=8)] = ""


class DisburseRequest(msgspec.Struct, **_BODY):
    transaction_id: TransactionId
    # Bounded by the body size first; the row bound is checked after decoding so that an
    # oversize message gets its own typed error (G2P_MESSAGE_TOO_LARGE).
    disbursements: list[Disbursement]


class SearchCriterion(msgspec.Struct, **_BODY):
    reference_id: ReferenceId
    request_type: Literal["disburse"]
    attribute_type: Literal["payer_fa", "payee_fa"]
    attribute_value: Fa
    timestamp: Short = ""
    locale: Annotated[str, Meta(max_length=8)] = ""


class SearchRequest(msgspec.Struct, **_BODY):
    transaction_id: TransactionId
    search_criteria: Annotated[list[SearchCriterion], Meta(min_length=1, max_length=100)]


def envelope(message_type):
    """The request body around a message: `signature`, `header`, `message`."""
    return msgspec.defstruct(
        f"{message_type.__name__}Envelope",
        [("header", Header), ("message", message_type),
         ("signature", Annotated[str, Meta(max_length=4096)], "")],
        **_BODY)


__all__ = ["AttributeNameValue", "DisburseRequest", "Disbursement", "Header", "LinkItem",
           "LinkRequest", "ResolveItem", "ResolveRequest", "SearchCriterion", "SearchRequest",
           "TxnStatusQuery", "TxnStatusRequest", "UnlinkItem", "UnlinkRequest",
           "UpdateRequest", "envelope"]
