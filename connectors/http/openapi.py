"""The HTTP connector's OpenAPI 3.1 document and its /docs page.

Schemas are generated from the msgspec Structs the connector really decodes and encodes
(`msgspec.json.schema_components`), so a constraint added to a core message shows up here
by itself. Paths are a hand-written table (`PATHS`), because what a route means (202 then a
callback, which errors it can answer) is a decision, not a type; a test checks this table
and the router in `app.py` name exactly the same routes. Callbacks the switch sends are the
`webhooks` section. Every body and answer has examples, built from the same Structs. The
/docs page is rendered once from the document, as static HTML with no script and no CDN:
its Markdown goes through a small escaping renderer (`markdown_html`), never raw.

This module must never import anything that does I/O.
"""

from __future__ import annotations

import html
import re
from typing import Any

import msgspec

from connectors.http import limits
from connectors.http.errors import ErrorBody, http_status
from connectors.http.resources import (
    Accepted,
    Health,
    PayeeAnswerBody,
    RequestToPayDecisionBody,
)
from switch.core.messages import (
    AliasAnswer,
    AliasRegistration,
    CreditRequest,
    ErrorAnswer,
    Outbound,
    ParticipantView,
    AmountMismatch,
    Party,
    ReconciledTransfer,
    ReconciliationReport,
    ReconciliationRequest,
    ReconciliationRow,
    Refused,
    RequestToPay,
    RequestToPayNotice,
    RequestToPayOutcome,
    ResolveAnswer,
    ReturnRequest,
    SettlementWindowView,
    TransferOutcome,
    TransferRef,
    TransferRequest,
)
from switch.core.results import (
    DESCRIPTIONS,
    ParticipantStatus,
    RequestToPayState,
    Result,
    TransferState,
)

REF = "#/components/schemas/{name}"
TITLE = "Ponte connector API (HTTP/JSON)"
# Core wire messages carry a `type` tag; in a request body it may be left out (the route
# says what the body is), so it is not `required` in the request schemas.
_REQUEST_TAGGED = ("TransferRequest", "ReturnRequest", "RequestToPay")


# -- examples ------------------------------------------------------------------------------
# Built from the Structs themselves (encoded as the connector encodes them), so an example cannot name a field
# the type does not have; a test validates each against its schema with jsonschema and
# decodes each request example with the connector's own decoder.

_AT_NS = 1_767_268_800_000_000_000  # 2026-01-01T12:00:00Z
_EXPIRES_NS = _AT_NS + 30_000_000_000  # 30 s later
_PAYER_ID = 7
_PAYEE_ID = 12
_TRANSFER_ID = "t-20260101-000042"
_STATUS_PATH = f"/transfers/{_PAYER_ID}/{_TRANSFER_ID}"
_ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")


def _example(summary: str, value) -> dict:
    # Through JSON and back: exactly what the connector writes (tuples become lists).
    return {"summary": summary, "value": msgspec.json.decode(msgspec.json.encode(value))}


_TRANSFER = TransferRequest(
    transfer_id=_TRANSFER_ID, payee=_ALIAS, amount_minor=150_000, currency="KES",
    expires_at_ns=_EXPIRES_NS, end_to_end_id="e2e-5f1c9a", purpose="rent, January",
    payer_account_ref="acc-0042", payer_user_ref="u-9c1f")
_COMMITTED = TransferOutcome(
    payer_participant_id=_PAYER_ID, transfer_id=_TRANSFER_ID, state=TransferState.COMMITTED,
    result=Result.OK, payee_participant_id=_PAYEE_ID, amount_minor=150_000, fee_minor=100,
    currency="KES", decided_at_ns=_AT_NS + 41_000_000)

EXAMPLES: dict[str, dict[str, dict]] = {
    "TransferRequest": {
        "by_alias": _example("Pay KES 1,500.00 to a phone number", _TRANSFER),
        "minimal": _example("Only the required fields", TransferRequest(
            transfer_id="t-20260101-000043", payee=Party(alias_type="EMAIL",
                                                         alias_value="ana@example.org"),
            amount_minor=2_500, currency="KES", expires_at_ns=_EXPIRES_NS)),
    },
    "ReturnRequest": {
        "partial": _example("Return KES 500.00 of a transfer you received", ReturnRequest(
            transfer_id="r-20260101-000007",
            original=TransferRef(payer_participant_id=_PAYER_ID, transfer_id=_TRANSFER_ID),
            amount_minor=50_000, expires_at_ns=_EXPIRES_NS, reason="goods returned")),
    },
    "RequestToPay": {
        "invoice": _example("Ask a customer of another participant to pay an invoice",
                            RequestToPay(
                                request_id="rtp-20260101-000003", payer=_ALIAS,
                                amount_minor=89_900, currency="KES", expires_at_ns=_EXPIRES_NS,
                                payee_account_ref="shop-17", purpose="invoice 2026-0042")),
    },
    "PayeeAnswerBody": {
        "accept": _example("Accept the credit", PayeeAnswerBody(accepted=True)),
        "reject": _example("Reject it, saying why", PayeeAnswerBody(
            accepted=False, reason="account closed")),
    },
    "RequestToPayDecisionBody": {
        "approve": _example("Approve: the request becomes this transfer",
                            RequestToPayDecisionBody(
                                approved=True, transfer_id="t-20260101-000044",
                                expires_at_ns=_EXPIRES_NS, payer_account_ref="acc-0042")),
        "decline": _example("Decline", RequestToPayDecisionBody(approved=False)),
    },
    "AliasRegistration": {
        "msisdn": _example("A person's phone number", AliasRegistration(
            alias_type="MSISDN", alias_value="+254700000001", account_ref="acc-0042",
            owner_national_id="12345678", display_name="Ana Wanjiru")),
        "random": _example("A random key: the directory issues it", AliasRegistration(
            alias_type="RANDOM", account_ref="shop-17", owner_national_id="P051234567X",
            display_name="Duka la Mama", owner_kind=2)),
    },
    "AliasAnswer": {
        "registered": _example("Registered (or already registered the same way)",
                               AliasAnswer(result=Result.OK, alias_type="MSISDN",
                                           alias_value="+254700000001", account_ref="acc-0042",
                                           display_name_masked="A** W******")),
    },
    "ResolveAnswer": {
        "found": _example("Found: pay it with a transfer to the same alias", ResolveAnswer(
            alias=_ALIAS, result=Result.OK, payee_participant_id=_PAYEE_ID,
            payee_account_ref="ref-8e2d41", display_name_masked="A** W******")),
    },
    "TransferOutcome": {
        "committed": _example("Committed: final, the payee's customer is credited",
                              _COMMITTED),
        "rejected": _example("Rejected by the payee: final, nothing moved", TransferOutcome(
            payer_participant_id=_PAYER_ID, transfer_id=_TRANSFER_ID,
            state=TransferState.REJECTED, result=Result.PAYEE_REJECTED,
            payee_participant_id=_PAYEE_ID, amount_minor=150_000, currency="KES",
            decided_at_ns=_AT_NS + 38_000_000, reason="account closed")),
        "in_flight": _example("Still waiting for the payee (a status query's answer)",
                              TransferOutcome(payer_participant_id=_PAYER_ID,
                                              transfer_id=_TRANSFER_ID,
                                              state=TransferState.FORWARDED, result=Result.OK,
                                              payee_participant_id=_PAYEE_ID,
                                              amount_minor=150_000, currency="KES")),
    },
    "ParticipantView": {
        "you": _example("The participant the key belongs to", ParticipantView(
            participant_id=_PAYER_ID, name="bank_a", status=ParticipantStatus.ACTIVE,
            currencies=("KES",))),
    },
    "SettlementWindows": {
        "windows": _example("The open window (live) and a settled one", [
            SettlementWindowView(window_id=42, currency="KES", state="open",
                                 opened_at_ns=_AT_NS, net_minor=-35_000),
            SettlementWindowView(window_id=41, currency="KES", state="settled",
                                 opened_at_ns=_AT_NS - 14_400_000_000_000,
                                 closed_at_ns=_AT_NS, decided_at_ns=_AT_NS + 600_000_000_000,
                                 net_minor=1_250_000, rtgs_reference="RTGS-20260101-0007")]),
    },
    "ReconciliationRequest": {
        "two": _example("Two transfers of the window, as you booked them",
                        ReconciliationRequest(transfers=[
                            ReconciliationRow(payer_participant_id=_PAYER_ID,
                                              transfer_id=_TRANSFER_ID, amount_minor=150_000),
                            ReconciliationRow(payer_participant_id=_PAYEE_ID,
                                              transfer_id="t-20260101-000051",
                                              amount_minor=2_500)])),
    },
    "ReconciliationReport": {
        "differences": _example("One matched, one amount differs, one you do not have",
                                ReconciliationReport(
                                    window_id=41, participant_id=_PAYER_ID, matched=1,
                                    missing_at_participant_count=1, missing_at_switch_count=0,
                                    amount_mismatch_count=1, duplicate_rows_count=0,
                                    missing_at_participant=[ReconciledTransfer(
                                        payer_participant_id=_PAYER_ID,
                                        transfer_id="t-20260101-000049", amount_minor=900)],
                                    missing_at_switch=[],
                                    amount_mismatches=[AmountMismatch(
                                        payer_participant_id=_PAYEE_ID,
                                        transfer_id="t-20260101-000051",
                                        switch_amount_minor=2_000,
                                        participant_amount_minor=2_500)],
                                    duplicate_rows=[], truncated=False)),
    },
    "Health": {
        "accepting": _example("Taking requests", Health(accepting=True, version="0.1.0")),
        "draining": _example("Starting or draining: retry shortly",
                             Health(accepting=False, version="0.1.0")),
    },
    "Outbound": {
        "credit_request": _example("A credit request: answer with PUT /transfers/...",
                                   CreditRequest(
                                       payer_participant_id=_PAYER_ID, transfer_id=_TRANSFER_ID,
                                       payee_account_ref="acc-7781", amount_minor=150_000,
                                       currency="KES", expires_at_ns=_EXPIRES_NS,
                                       payee_alias=_ALIAS, end_to_end_id="e2e-5f1c9a",
                                       purpose="rent, January")),
        "transfer_outcome": _example("A transfer's final outcome (to payer and payee)",
                                     _COMMITTED),
        "refused": _example("A request that was not acted on", Refused(
            request_type="transfer", scope_participant_id=_PAYER_ID, id=_TRANSFER_ID,
            result=Result.PAYER_INSUFFICIENT_LIQUIDITY)),
        "request_to_pay_notice": _example("A payee asks you (the payer) to pay",
                                          RequestToPayNotice(
                                              payee_participant_id=_PAYEE_ID,
                                              request_id="rtp-20260101-000003",
                                              payer_account_ref="acc-0042",
                                              amount_minor=89_900, currency="KES",
                                              expires_at_ns=_EXPIRES_NS,
                                              purpose="invoice 2026-0042")),
        "request_to_pay_outcome": _example("Where your request-to-pay ended",
                                           RequestToPayOutcome(
                                               payee_participant_id=_PAYEE_ID,
                                               request_id="rtp-20260101-000003",
                                               state=RequestToPayState.APPROVED,
                                               result=Result.OK,
                                               payer_participant_id=_PAYER_ID,
                                               transfer_id="t-20260101-000044")),
        "error": _example("A message the switch could not act on", ErrorAnswer(
            result=Result.MALFORMED_SYNTAX, detail="not a JSON object")),
    },
}


def _accepted_example(kind: str) -> dict:
    ids = {"transfer": (_TRANSFER_ID, _STATUS_PATH),
           "return": ("r-20260101-000007", f"/transfers/{_PAYEE_ID}/r-20260101-000007"),
           "payee_answer": (_TRANSFER_ID, _STATUS_PATH),
           "request_to_pay": ("rtp-20260101-000003", ""),
           "request_to_pay_decision": ("rtp-20260101-000003",
                                       f"/transfers/{_PAYER_ID}/t-20260101-000044")}
    id_, status_path = ids[kind]
    return {"recorded": _example("Recorded durably", Accepted(kind=kind, id=id_,
                                                               status_path=status_path))}


def _ref(name: str) -> dict:
    return {"$ref": REF.format(name=name)}


def _json(name: str, examples: dict | None = None) -> dict:
    media = {"schema": _ref(name)}
    if examples is None:
        examples = EXAMPLES.get(name)
    if examples:
        media["examples"] = examples
    return {"content": {"application/json": media}}


def _error(description: str, *examples: tuple[Result, str]) -> dict:
    """An error answer: its description names the results it can carry, `examples` gives
    (result, detail) of the ones to show."""
    shown = {result.name: _example(f"{result.name}: {DESCRIPTIONS[result]}",
                                   ErrorBody(result=int(result), name=result.name,
                                             detail=detail))
             for result, detail in examples}
    return {"description": description, **_json("ErrorBody", shown)}


_PATH_PARAMS = {
    "payer_participant_id": ("integer", "The payer participant: transfer ids are scoped by it."),
    "payee_participant_id": ("integer", "The payee participant: request ids are scoped by it."),
    "transfer_id": ("string", "The payer's transfer id (its idempotency key)."),
    "request_id": ("string", "The payee's request-to-pay id."),
    "alias_type": ("string", "MSISDN, EMAIL, NATIONAL_ID, HANDLE, RANDOM or ACCOUNT."),
    "alias_value": ("string", "The alias, percent-encoded (e.g. +254700000001 or a@b.example)."),
    "window_id": ("integer", "A settlement window (see GET /settlement/windows)."),
}


def _params(*names: str) -> list[dict]:
    return [
        {"name": name, "in": "path", "required": True, "description": _PATH_PARAMS[name][1],
         "schema": {"type": _PATH_PARAMS[name][0]}}
        for name in names
    ]


_AUTH_ERRORS = {
    "401": _error("No or unknown API key (VALIDATION_ERROR), or a missing or bad JWS "
                  "signature (INVALID_SIGNATURE).",
                  (Result.VALIDATION_ERROR, "missing or unknown API key"),
                  (Result.INVALID_SIGNATURE, "signature required")),
}
_BODY_ERRORS = {
    "400": _error("Malformed JSON (MALFORMED_SYNTAX) or a field that breaks its schema or "
                  "is unknown (VALIDATION_ERROR; `detail` names it, e.g. `$.amount_minor`).",
                  (Result.MALFORMED_SYNTAX, "JSON is malformed: invalid character (byte 0)"),
                  (Result.VALIDATION_ERROR, "Expected `int` >= 1 - at `$.amount_minor`")),
    "411": _error("No Content-Length (chunked bodies are refused): VALIDATION_ERROR.",
                  (Result.VALIDATION_ERROR, "Content-Length required")),
    "413": _error(f"Body larger than {limits.REQUEST_BODY_BYTES_MAX} bytes: "
                  "VALIDATION_ERROR.", (Result.VALIDATION_ERROR, "body too large")),
    "415": _error("Content-Type is not JSON: VALIDATION_ERROR.",
                  (Result.VALIDATION_ERROR, "Content-Type must be application/json")),
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer", "minimum": 1}}}
_BUSY = {"503": {**_error("SERVER_BUSY or SERVICE_UNAVAILABLE: retry after `Retry-After` "
                          "seconds with the same id.", (Result.SERVER_BUSY, ""),
                          (Result.SERVICE_UNAVAILABLE, "")),
                 "headers": _RETRY_AFTER}}
_SIGNATURE_HEADERS = [
    {"name": "X-Jws-Signature", "in": "header", "required": False,
     "description": "Detached compact JWS of the body: <b64url(header)>..<b64url(sig)>; "
                    "the protected header must carry this request's FSPIOP-URI (path and "
                    "query as sent) and FSPIOP-HTTP-Method.",
     "schema": {"type": "string"}},
    {"name": "FSPIOP-Signature", "in": "header", "required": False,
     "description": 'The same signature in the Mojaloop form: {"protectedHeader": "...", '
                    '"signature": "..."}.',
     "schema": {"type": "string"}},
]


def _accepted(kind: str) -> dict:
    return {"202": {"description": f"Recorded durably ({kind}); the outcome arrives at the "
                                   "callback URL.",
                    **_json("Accepted", _accepted_example(kind))}}


def _operation(operation_id: str, summary: str, description: str, *, body: str | None = None,
               responses: dict, params: tuple[str, ...] = (), query: list[dict] | None = None,
               public: bool = False) -> dict:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "responses": dict(responses),
    }
    parameters = _params(*params) + (query or [])
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
        parameters += _SIGNATURE_HEADERS
        operation["responses"].update(_BODY_ERRORS)
    if parameters:
        operation["parameters"] = parameters
    if public:
        operation["security"] = []
    else:
        operation["responses"].update(_AUTH_ERRORS)
        operation["responses"].update(_BUSY)
    return operation


# The routes, by path template and method. Keep in step with `app.ROUTES` (a test checks).
PATHS: dict[str, dict[str, dict]] = {
    "/aliases": {
        "post": _operation(
            "registerAlias", "Register an alias for one of your accounts",
            "Binds an alias to an account of the calling participant. Registering the same "
            "alias again answers 200 with the stored registration, so retries are safe. A "
            "directory refusal answers VALIDATION_ERROR (or PARTY_NOT_FOUND) with `detail` "
            "naming the field and the directory's own code.",
            body="AliasRegistration",
            responses={"200": {"description": "Registered.", **_json("AliasAnswer")}}),
    },
    "/aliases/{alias_type}/{alias_value}": {
        "get": _operation(
            "resolveAlias", "Resolve an alias (lookup before a transfer)",
            "Answers the payee participant, an opaque account reference and a masked name. "
            "Charges the anti-enumeration buckets of the payer end user (`payer_user_ref`) "
            "and of the calling participant; a transfer to the same alias within a minute "
            "reuses this lookup.",
            params=("alias_type", "alias_value"),
            query=[{"name": "payer_user_ref", "in": "query", "required": False,
                    "description": "Opaque id of the payer end user (bucket key).",
                    "schema": {"type": "string", "maxLength": 128}}],
            responses={"200": {"description": "Found.", **_json("ResolveAnswer")},
                       "404": _error("PARTY_NOT_FOUND: no such alias.",
                                     (Result.PARTY_NOT_FOUND, "")),
                       "400": _error("VALIDATION_ERROR: malformed alias.",
                                     (Result.VALIDATION_ERROR, "alias_type is not valid")),
                       "429": {**_error("LOOKUP_RATE_LIMITED: too many lookups for this end "
                                        "user or participant; `retry_after_ms` (and "
                                        "`Retry-After`) says when a lookup is possible again.",
                                        (Result.LOOKUP_RATE_LIMITED, "")),
                               "headers": _RETRY_AFTER}}),
        "delete": _operation(
            "deleteAlias", "Delete one of your aliases",
            "Removes an alias the calling participant holds.",
            params=("alias_type", "alias_value"),
            responses={"200": {"description": "Deleted.", **_json("AliasAnswer")},
                       "404": _error("PARTY_NOT_FOUND: no such alias.",
                                     (Result.PARTY_NOT_FOUND, "")),
                       "400": _error("VALIDATION_ERROR: not yours, or malformed.",
                                     (Result.VALIDATION_ERROR, "alias_value is empty or too "
                                                               "long"))}),
    },
    "/transfers": {
        "post": _operation(
            "createTransfer", "Send a push credit transfer",
            "`transfer_id` is your idempotency key: the same id with the same body is "
            "harmless (the first outcome stands and is sent again); with a different body "
            "it is refused EXISTS_WITH_DIFFERENT_*. 202 means recorded; the outcome "
            "(TransferOutcome, or Refused) arrives at your callback URL and is always "
            "retrievable with GET /transfers/{payer_participant_id}/{transfer_id}.",
            body="TransferRequest", responses=_accepted("transfer")),
    },
    "/transfers/{payer_participant_id}/{transfer_id}": {
        "get": _operation(
            "getTransfer", "Where a transfer stands (pacs.028)",
            "Either party may ask at any time; answered once the state it reveals is "
            "durable.",
            params=("payer_participant_id", "transfer_id"),
            responses={"200": {"description": "The transfer's state.",
                               **_json("TransferOutcome")},
                       "404": _error("TRANSFER_NOT_FOUND.",
                                     (Result.TRANSFER_NOT_FOUND, ""))}),
        "put": _operation(
            "answerCreditRequest", "The payee's answer to a credit request",
            "PUT to the transfer it answers, as FSPIOP's PUT /transfers/{ID} (the URL names "
            "the transfer, the body says accept or reject). Answering twice is harmless. "
            "The final TransferOutcome follows at both parties' callback URLs.",
            body="PayeeAnswerBody", params=("payer_participant_id", "transfer_id"),
            responses=_accepted("payee_answer")),
    },
    "/returns": {
        "post": _operation(
            "createReturn", "Return (refund) a committed transfer you received",
            "A new transfer in the opposite direction, linked to the original; all returns "
            "of one transfer add up to at most its amount. Idempotent by `transfer_id` like "
            "a transfer; the outcome arrives at your callback URL.",
            body="ReturnRequest", responses=_accepted("return")),
    },
    "/requests-to-pay": {
        "post": _operation(
            "createRequestToPay", "Ask a payer to pay (request-to-pay)",
            "The payer receives a RequestToPayNotice and approves or declines; the "
            "RequestToPayOutcome arrives at your callback URL.",
            body="RequestToPay", responses=_accepted("request_to_pay")),
    },
    "/requests-to-pay/{payee_participant_id}/{request_id}": {
        "put": _operation(
            "decideRequestToPay", "The payer's decision on a request-to-pay",
            "Approving names the transfer the request becomes (its id and expiry); that "
            "transfer then runs like any other and its outcome arrives by callback.",
            body="RequestToPayDecisionBody", params=("payee_participant_id", "request_id"),
            responses=_accepted("request_to_pay_decision")),
    },
    "/participant": {
        "get": _operation(
            "whoami", "The participant your API key belongs to",
            "Its id (the scope of your transfer ids and the first segment of your status "
            "paths), name, status and currencies. The SDK calls it on connect.",
            responses={"200": {"description": "You.", **_json("ParticipantView")},
                       "404": _error("PAYER_NOT_FOUND: the key's participant is not "
                                     "registered in the core.",
                                     (Result.PAYER_NOT_FOUND, "participant not registered"))}),
    },
    "/settlement/windows": {
        "get": _operation(
            "settlementWindows", "Your settlement windows",
            "The windows of every currency you hold an account in, newest first, each with "
            "your own net position only (negative: you pay it in at the RTGS; positive: you "
            "are paid). The open window's position is live.",
            query=[{"name": "currency", "in": "query", "required": False,
                    "description": "One currency only (ISO 4217 code).",
                    "schema": {"type": "string", "pattern": "^[A-Z]{3}$"}}],
            responses={"200": {"description": "Newest first.",
                               "content": {"application/json": {
                                   "schema": {"type": "array",
                                              "items": _ref("SettlementWindowView")},
                                   "examples": EXAMPLES["SettlementWindows"]}}},
                       "400": _error("VALIDATION_ERROR: the currency is not a code.",
                                     (Result.VALIDATION_ERROR,
                                      "currency is three capital letters"))}),
    },
    "/settlement/windows/{window_id}/statement": {
        "get": _operation(
            "settlementStatement", "Your statement of a window (camt.053, camt.052, CSV)",
            "Streamed (chunked): ISO 20022 camt.053.001.08 for a closed window (`format="
            "camt053`), camt.052.001.08 as an intraday report (`camt052`, the open window "
            "too), or CSV (`csv`) with the same entries: opening and closing balance of your "
            "account at the switch, and every entry booked on it in the window — transfers "
            "you paid (and their fee) or received, with their ids, and operator and "
            "settlement postings. Only ever your own entries.",
            params=("window_id",),
            query=[{"name": "format", "in": "query", "required": False,
                    "description": "camt053 (default), camt052 or csv.",
                    "schema": {"type": "string", "enum": ["camt053", "camt052", "csv"]}}],
            responses={"200": {"description": "The statement, streamed.", "content": {
                "application/xml": {"schema": {"type": "string"}, "examples": {
                    "camt053": {"summary": "camt.053 (abridged)", "value": (
                        '<?xml version="1.0" encoding="UTF-8"?><Document xmlns="urn:iso:std:'
                        'iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>...<Ntry><NtryRef>'
                        '79002</NtryRef><Amt Ccy="KES">1500.00</Amt><CdtDbtInd>DBIT</CdtDbtInd>'
                        '...</Ntry></BkToCstmrStmt></Document>')}}},
                "text/csv": {"schema": {"type": "string"}, "examples": {
                    "csv": {"summary": "CSV (first rows)", "value": (
                        "window_id,booked_at_utc,entry,direction,amount_minor,amount,currency,"
                        "payer_participant_id,transfer_id,payee_participant_id,end_to_end_id,"
                        "ledger_transfer_id\n41,2026-01-01T12:00:00.041Z,PAYMENT,DBIT,150000,"
                        "1500.00,KES,7,t-20260101-000042,12,e2e-5f1c9a,79002\n")}}}}},
                       "404": _error("STATEMENT_WINDOW_NOT_FOUND: no such window in your "
                                     "currencies.", (Result.STATEMENT_WINDOW_NOT_FOUND,
                                                     "window 99")),
                       "409": _error("STATEMENT_WINDOW_OPEN: camt053 of the open window.",
                                     (Result.STATEMENT_WINDOW_OPEN, "ask for camt052")),
                       "400": _error("STATEMENT_FORMAT_UNKNOWN, or VALIDATION_ERROR (the "
                                     "window id).", (Result.STATEMENT_FORMAT_UNKNOWN, "xls"))}),
    },
    "/settlement/windows/{window_id}/reconciliation": {
        "post": _operation(
            "settlementReconciliation", "Reconcile your list of a window's transfers",
            "Send every transfer of the window you paid or received, as you booked it; the "
            "answer names the differences: transfers committed in the window your list "
            "lacks, rows the switch has no such transfer for, and amounts that differ "
            f"(each list at most {10_000:,} long, with complete counts). At most 100,000 "
            "rows, and bodies up to "
            f"{limits.LARGE_REQUEST_BODY_BYTES_MAX // (1024 * 1024)} MiB.",
            body="ReconciliationRequest", params=("window_id",),
            responses={"200": {"description": "The differences.",
                               **_json("ReconciliationReport")},
                       "404": _error("STATEMENT_WINDOW_NOT_FOUND.",
                                     (Result.STATEMENT_WINDOW_NOT_FOUND, "window 99")),
                       "413": _error("RECONCILIATION_TOO_LARGE: too many rows.",
                                     (Result.RECONCILIATION_TOO_LARGE,
                                      "at most 100000 rows"))}),
    },
    "/health": {
        "get": _operation(
            "health", "Whether the switch takes requests", "No authentication.",
            public=True,
            responses={"200": {"description": "Taking requests.", **_json("Health")},
                       "503": {"description": "Starting or draining.", **_json("Health")}}),
    },
    "/openapi.json": {
        "get": _operation(
            "openapi", "This document", "No authentication.", public=True,
            responses={"200": {"description": "The OpenAPI 3.1 document.",
                               "content": {"application/json": {
                                   "schema": {"type": "object"},
                                   "examples": {"document": {
                                       "summary": "This document (abridged)",
                                       "value": {"openapi": "3.1.0",
                                                 "info": {"title": TITLE, "version": "1.0.0"},
                                                 "paths": {}}}}}}}}),
    },
    "/docs": {
        "get": _operation(
            "docs", "This API as a web page", "No authentication.", public=True,
            responses={"200": {"description": "HTML.",
                               "content": {"text/html": {
                                   "schema": {"type": "string"},
                                   "examples": {"page": {
                                       "summary": "The page (abridged)",
                                       "value": f"<!doctype html><html><head><title>{TITLE}"
                                                "</title></head><body>...</body></html>"}}}}}}),
    },
}

_WEBHOOK = {
    "post": {
        "operationId": "callback",
        "summary": "Every message the switch sends you, at your registered callback URL",
        "description": (
            "POST <callback_url> with one JSON message; its `type` says which: "
            "`credit_request` (answer with PUT /transfers/{payer}/{id}), `transfer_outcome` "
            "(final state; as payee credit your customer only on COMMITTED), `refused` (the "
            "request was not acted on), `request_to_pay_notice`, `request_to_pay_outcome`, "
            "`error`. Answer 2xx as soon as the message is stored; do the work afterwards. "
            "Failures (no connection, timeout, 408, 429, 5xx) are retried with exponential "
            "back-off and jitter; another 4xx is not retried. The same message may arrive "
            "more than once: handle it idempotently by its ids. Signed with the switch's "
            "key in `X-Jws-Signature` when the switch has one."),
        "parameters": [
            {"name": "X-Jws-Signature", "in": "header", "required": False,
             "description": "The switch's detached JWS of the body, when it has a signing "
                            "key: verify it with the switch's public key.",
             "schema": {"type": "string"}},
        ],
        "requestBody": {"required": True, **_json("Outbound")},
        "responses": {"200": {"description": "Stored."},
                      "204": {"description": "Stored."}},
    }
}

_SCHEMA_TYPES = (TransferRequest, ReturnRequest, RequestToPay, PayeeAnswerBody,
                 RequestToPayDecisionBody, AliasRegistration, AliasAnswer, ResolveAnswer,
                 TransferOutcome, Accepted, Health, ErrorBody, ParticipantView,
                 SettlementWindowView, ReconciliationRequest, ReconciliationReport, Outbound)


# The document's introduction (Markdown, as OpenAPI descriptions are); the result codes
# follow it in the document and are a table on the /docs page.
INTRO = (
    "What a bank or wallet speaks to the Ponte switch over HTTP. Money is an integer of "
    "minor units (`amount_minor`), never a float; times are UTC nanoseconds since the epoch "
    "(`expires_at_ns`).\n\n"
    "**Authentication**: every request except `/health`, `/openapi.json` and `/docs` carries "
    "the participant's API key, as `Authorization: Bearer <api key>` or `X-Api-Key: <api "
    "key>`; the participant is always the key's, never one named in a body or path. Bodies "
    "may carry a detached JWS signature (`X-Jws-Signature` or `FSPIOP-Signature`), which "
    "participants registered as signing must send.\n\n"
    "**Asynchronous operations** answer `202` once the request is durably recorded and "
    "deliver the outcome to your callback URL (see the callback below); the outcome is "
    "always retrievable at the answer's `status_path`. Resend with the same id when unsure: "
    "it is never acted on twice.")


def build_document(server_url: str = "/") -> dict:
    """The whole OpenAPI 3.1 document as a dict (encode once, serve the bytes)."""
    schemas, components = msgspec.json.schema_components(_SCHEMA_TYPES, ref_template=REF)
    components["Outbound"] = schemas[-1]
    for name in _REQUEST_TAGGED:
        schema = components[name]
        schema["required"] = [field for field in schema["required"] if field != "type"]
    result_lines = "\n".join(
        f"- `{int(member)}` {member.name} (HTTP {http_status(member)}): {DESCRIPTIONS[member]}"
        for member in Result)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": "1.0.0",
            "description": INTRO + "\n\nEvery error body is `ErrorBody`; `result` is one of:"
                           "\n\n" + result_lines,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": PATHS,
        "webhooks": {"callback": _WEBHOOK},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "The participant's API key."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    }


# Headers a participant sends or receives, for the /docs page: (header, direction, what).
HEADERS = (
    ("Authorization", "request", "`Bearer <api key>`: the participant's API key (every "
                                 "route but /health, /openapi.json and /docs)."),
    ("X-Api-Key", "request", "The API key, instead of `Authorization`."),
    ("Content-Type", "request", "`application/json` (or any `application/*+json`) on a "
                                "request with a body; anything else is `415`."),
    ("Content-Length", "request", "Required with a body (no chunked uploads: `411`); at "
                                  f"most {limits.REQUEST_BODY_BYTES_MAX} bytes (`413`)."),
    ("X-Jws-Signature", "request", "Optional detached compact JWS of the body "
                                   "(`<b64url(header)>..<b64url(signature)>`); required "
                                   "for participants registered as signing."),
    ("FSPIOP-Signature", "request", "The same signature in the Mojaloop form: "
                                    '`{"protectedHeader": "...", "signature": "..."}`.'),
    ("Retry-After", "answer", "Seconds to wait, with `503` (SERVER_BUSY, "
                              "SERVICE_UNAVAILABLE) and `429` (LOOKUP_RATE_LIMITED)."),
    ("X-Jws-Signature", "callback", "The switch's detached JWS of a callback body, when "
                                    "the switch has a signing key."),
)

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def markdown_html(text: str, inline: bool = False) -> str:
    """The small Markdown the document's descriptions use, as HTML: paragraphs (blank
    lines), `- ` bullet lists, `code` and **bold**. Everything is HTML-escaped first, so no
    tag, attribute or link can come through; anything else stays literal text.
    `inline`: one paragraph's content, without the <p>."""
    if inline:
        return _inline_html(text)
    parts = []
    for block in re.split(r"\n\s*\n", text.strip()):
        paragraph: list[str] = []
        items: list[str] = []
        for line in block.splitlines():
            if line.startswith("- "):
                if paragraph:
                    parts.append(f"<p>{_inline_html(' '.join(paragraph))}</p>")
                    paragraph = []
                items.append(line[2:])
            elif items and line.startswith("  "):
                items[-1] += " " + line.strip()  # a list item's continuation line
            else:
                if items:
                    parts.append(_list_html(items))
                    items = []
                paragraph.append(line.strip())
        if paragraph:
            parts.append(f"<p>{_inline_html(' '.join(paragraph))}</p>")
        if items:
            parts.append(_list_html(items))
    return "".join(parts)


def _list_html(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in items) + "</ul>"


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)

    def replace(match: re.Match) -> str:
        code, bold = match.groups()
        return f"<code>{code}</code>" if code is not None else f"<strong>{bold}</strong>"

    return _INLINE.sub(replace, escaped)


def _name_of(schema: dict) -> str:
    return schema.get("$ref", "").rsplit("/", 1)[-1]


def _schema_html(name: str, schema: dict) -> str:
    rows = []
    required = set(schema.get("required", ()))
    for field, spec in schema.get("properties", {}).items():
        if "$ref" in spec:
            kind = spec["$ref"].rsplit("/", 1)[1]
        elif "anyOf" in spec:
            kind = " | ".join(part.get("$ref", "").rsplit("/", 1)[-1] or part.get("type", "?")
                              for part in spec["anyOf"])
        else:
            kind = str(spec.get("type", spec.get("enum", "")))
        bounds = ", ".join(f"{key} {spec[key]}" for key in
                           ("minimum", "maximum", "minLength", "maxLength", "pattern")
                           if key in spec)
        rows.append(f"<tr><td><code>{html.escape(field)}</code></td><td>{html.escape(kind)}"
                    f"</td><td>{'yes' if field in required else ''}</td>"
                    f"<td>{html.escape(bounds)}</td></tr>")
    description = markdown_html(schema.get("description", ""))
    table = ("<table><tr><th>field</th><th>type</th><th>required</th><th>bounds</th></tr>"
             + "".join(rows) + "</table>") if rows else ""
    enum = f"<p>values: <code>{html.escape(str(schema['enum']))}</code></p>" \
        if "enum" in schema else ""
    return f'<h3 id="{html.escape(name)}">{html.escape(name)}</h3>{description}' \
           f"{enum}{table}"


def _examples_html(media: dict) -> str:
    parts = []
    for example in media.get("examples", {}).values():
        value = example["value"]
        text = value if isinstance(value, str) else msgspec.json.format(
            msgspec.json.encode(value), indent=2).decode()
        parts.append(f"<p><i>{html.escape(example['summary'], quote=False)}</i></p>"
                     f"<pre>{html.escape(text, quote=False)}</pre>")
    return "".join(parts)


def _operation_html(title: str, operation: dict) -> str:
    parts = [f"<h3><code>{html.escape(title)}</code></h3>"]
    if "summary" in operation:
        parts.append(f"<p><b>{html.escape(operation['summary'])}</b></p>")
    parts.append(markdown_html(operation.get("description", "")))
    if operation.get("security") == []:
        parts.append("<p>No authentication.</p>")
    parameters = operation.get("parameters", [])
    if parameters:
        parts.append("<table><tr><th>parameter</th><th>in</th><th>required</th>"
                     "<th>meaning</th></tr>")
        for parameter in parameters:
            parts.append(
                f"<tr><td><code>{html.escape(parameter['name'])}</code></td>"
                f"<td>{parameter['in']}</td><td>{'yes' if parameter['required'] else ''}"
                f"</td><td>{markdown_html(parameter.get('description', ''), inline=True)}"
                "</td></tr>")
        parts.append("</table>")
    body = operation.get("requestBody")
    if body is not None:
        media = body["content"]["application/json"]
        name = _name_of(media["schema"])
        parts.append(f"<p>body: <a href='#{name}'>{name}</a></p>{_examples_html(media)}")
    parts.append("<p>answers:</p><ul>")
    for status, response in operation["responses"].items():
        media = next(iter(response.get("content", {}).values()), None)
        name = _name_of(media["schema"]) if media else ""
        link = f" <a href='#{name}'>{name}</a>" if name else ""
        headers = "".join(f" (header <code>{html.escape(header)}</code>)"
                          for header in response.get("headers", {}))
        # Every media type's examples (a statement is XML or CSV).
        shown = "".join(_examples_html(each) for each in response.get("content", {}).values())
        parts.append(f"<li><b>{status}</b>{link}{headers}: "
                     f"{markdown_html(response['description'], inline=True)}{shown}</li>")
    parts.append("</ul>")
    return "".join(parts)


def render_docs(document: dict) -> str:
    """A static HTML page of the document: how to authenticate, the headers, every
    operation with its parameters, bodies, answers and examples, the callback, the result
    codes and the schemas. Markdown is rendered (`markdown_html`); no script, no CDN."""
    schemes = document["components"]["securitySchemes"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(document['info']['title'])}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "code,pre{background:#f3f3f3}pre{padding:.5em;overflow-x:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:.2em .5em;text-align:left;vertical-align:top}</style></head><body>",
        f"<h1>{html.escape(document['info']['title'])}</h1>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
        markdown_html(INTRO),
        "<h2>Authentication</h2><ul>",
    ]
    for name, scheme in schemes.items():
        where = ("header <code>Authorization: Bearer &lt;api key&gt;</code>"
                 if scheme["type"] == "http" else
                 f"header <code>{html.escape(scheme['name'])}: &lt;api key&gt;</code>")
        parts.append(f"<li><code>{name}</code>: {where}. "
                     f"{markdown_html(scheme.get('description', ''), inline=True)}</li>")
    parts.append("</ul><p>Without a valid key: <b>401</b> <code>VALIDATION_ERROR</code>.</p>")
    parts.append("<h2>Headers</h2><table><tr><th>header</th><th>on</th><th>meaning</th></tr>")
    for header, direction, meaning in HEADERS:
        parts.append(f"<tr><td><code>{header}</code></td><td>{direction}</td>"
                     f"<td>{markdown_html(meaning, inline=True)}</td></tr>")
    parts.append("</table><h2>Operations</h2>")
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            parts.append(_operation_html(f"{method.upper()} {path}", operation))
    parts.append("<h2>Callbacks (webhooks)</h2>")
    for name, hook in document["webhooks"].items():
        for method, operation in hook.items():
            parts.append(_operation_html(f"{method.upper()} <callback_url> ({name})",
                                         operation))
    parts.append("<h2>Result codes</h2><p>Every error answer's body is "
                 "<a href='#ErrorBody'>ErrorBody</a>; its <code>result</code> is one of "
                 "these, and the HTTP status follows from it.</p><table><tr><th>result</th>"
                 "<th>name</th><th>HTTP</th><th>meaning</th></tr>")
    for member in Result:
        parts.append(f"<tr><td>{int(member)}</td><td><code>{member.name}</code></td>"
                     f"<td>{http_status(member)}</td>"
                     f"<td>{markdown_html(DESCRIPTIONS[member], inline=True)}</td></tr>")
    parts.append("</table><h2>Schemas</h2>")
    for name, schema in sorted(document["components"]["schemas"].items()):
        parts.append(_schema_html(name, schema))
    parts.append("</body></html>")
    return "".join(parts)
