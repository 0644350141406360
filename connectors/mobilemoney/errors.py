"""The one table from Ponte's result codes to the GSMA Mobile Money API's error objects.

Every refusal the hub answers, every failure callback and every failed request state is an
`errorObject` {errorCategory, errorCode, errordescription, errorDateTime, errorParameters}
with the HTTP status the spec lists for its category (400 business rule or validation, 401
authorisation, 404 identification, 500 internal, 503 unavailable: the only error statuses
the spec documents). The Ponte result travels in `errorParameters` ("ponteResult",
"ponteResultName"), so nothing is lost in the mapping. `RESULT_ERRORS` names the members
whose meaning has a closer GSMA code; any other member (a future one included) maps by its
FSPIOP family. This module must never decide an outcome: it only says how one decided
elsewhere is written on this API.
"""

from __future__ import annotations

import time

import msgspec

from connectors.http.server import Response
from connectors.mobilemoney import limits
from connectors.mobilemoney.wire import ErrorObject, Metadata, date_time
from switch.core.results import Result, family

# The spec's errorCategory values and the status it documents for each.
CATEGORY_STATUS: dict[str, int] = {
    "businessRule": 400,
    "validation": 400,
    "authorisation": 401,
    "identification": 404,
    "internal": 500,
    "serviceUnavailable": 503,
}

# (errorCategory, errorCode) for the results whose meaning has a closer GSMA code.
RESULT_ERRORS: dict[Result, tuple[str, str]] = {
    Result.COMMUNICATION_ERROR: ("serviceUnavailable", "genericError"),
    Result.INTERNAL_SERVER_ERROR: ("internal", "genericError"),
    Result.SERVICE_UNAVAILABLE: ("serviceUnavailable", "genericError"),
    Result.INVALID_SIGNATURE: ("authorisation", "clientAuthorisationError"),
    Result.MALFORMED_SYNTAX: ("validation", "formatError"),
    Result.VALIDATION_ERROR: ("validation", "formatError"),
    Result.PARTY_NOT_FOUND: ("identification", "identifierError"),
    Result.LOOKUP_RATE_LIMITED: ("businessRule", "rateLimitError"),
    Result.ID_INVALID: ("validation", "formatError"),
    Result.TRANSFER_NOT_FOUND: ("identification", "genericError"),
    Result.REQUEST_NOT_FOUND: ("identification", "genericError"),
    Result.EXISTS_WITH_DIFFERENT_PARTY: ("businessRule", "duplicateRequest"),
    Result.EXISTS_WITH_DIFFERENT_AMOUNT: ("businessRule", "duplicateRequest"),
    Result.EXISTS_WITH_DIFFERENT_CURRENCY: ("businessRule", "duplicateRequest"),
    Result.EXISTS_WITH_DIFFERENT_BODY: ("businessRule", "duplicateRequest"),
    Result.AMOUNT_INVALID: ("validation", "lessThanTransactionMinValue"),
    Result.TRANSFER_EXPIRED: ("businessRule", "requestDeclined"),
    Result.REQUEST_EXPIRED: ("businessRule", "requestDeclined"),
    Result.EXPIRY_TOO_FAR: ("validation", "formatError"),
    Result.PAYER_NOT_FOUND: ("identification", "identifierError"),
    Result.PAYEE_NOT_FOUND: ("identification", "identifierError"),
    Result.PAYER_AND_PAYEE_SAME: ("businessRule", "samePartiesError"),
    Result.CURRENCY_NOT_SUPPORTED: ("validation", "currencyNotSupported"),
    Result.SERVER_BUSY: ("serviceUnavailable", "genericError"),
    Result.ORIGINAL_TRANSFER_NOT_FOUND: ("identification", "genericError"),
    Result.RETURN_ORIGINAL_NOT_COMMITTED: ("businessRule", "incorrectState"),
    Result.RETURN_PARTIES_MISMATCH: ("authorisation", "requestingPartyAuthorisationError"),
    Result.RETURN_WINDOW_CLOSED: ("businessRule", "requestDeclined"),
    Result.FULFILMENT_INVALID: ("businessRule", "requestDeclined"),
    Result.PAYER_BLOCKED: ("businessRule", "requestDeclined"),
    Result.PAYEE_BLOCKED: ("businessRule", "requestDeclined"),
    Result.PAYER_CURRENCY_NOT_ENABLED: ("validation", "currencyNotSupported"),
    Result.PAYEE_CURRENCY_NOT_ENABLED: ("validation", "currencyNotSupported"),
    Result.RETURN_EXCEEDS_ORIGINAL: ("businessRule", "overPaymentNotAllowed"),
    Result.AMOUNT_ABOVE_TRANSFER_MAX: ("businessRule", "greaterThanTransactionMaxValue"),
    Result.PAYER_DAILY_LIMIT_EXCEEDED: ("businessRule", "dailyValueLimitExceeded"),
    Result.PAYEE_ACCOUNT_OVERFLOW: ("businessRule", "maxBalanceExceeded"),
    Result.HUB_ACCOUNT_OVERFLOW: ("internal", "genericError"),
    Result.PAYER_INSUFFICIENT_LIQUIDITY: ("businessRule", "insufficientFunds"),
    Result.PAYEE_REJECTED: ("businessRule", "requestDeclined"),
    Result.PAYER_REJECTED_REQUEST: ("businessRule", "requestDeclined"),
}
# Any other member, by its FSPIOP family (operator results never reach a wallet).
FAMILY_ERRORS: dict[str, tuple[str, str]] = {
    "success": ("internal", "genericError"),
    "communication": ("serviceUnavailable", "genericError"),
    "server": ("internal", "genericError"),
    "validation": ("validation", "formatError"),
    "client": ("validation", "formatError"),
    "not found": ("identification", "genericError"),
    "expired": ("businessRule", "requestDeclined"),
    "payer": ("businessRule", "requestDeclined"),
    "payee": ("businessRule", "requestDeclined"),
    "operator": ("internal", "genericError"),
}

# Errors the connector finds itself, before anything reaches the switch.
NEGATIVE_VALUE = ("validation", "negativeValue")
MANDATORY_VALUE = ("validation", "mandatoryValueNotSupplied")
IDENTIFIER_ERROR = ("validation", "identifierError")
TRANSACTION_TYPE_ERROR = ("validation", "transactionTypeError")
NOT_AUTHORISED = ("authorisation", "clientAuthorisationError")
INVALID_OFFSET = ("validation", "invalidOffset")

_encode = msgspec.json.Encoder().encode


def gsma_error(result: Result) -> tuple[str, str]:
    """(errorCategory, errorCode) for a Ponte result."""
    found = RESULT_ERRORS.get(result)
    if found is None:
        found = FAMILY_ERRORS[family(result)]
    return found


def error_object(result: Result, detail: str, now_ns: int,
                 code: tuple[str, str] | None = None) -> ErrorObject:
    category, error_code = code or gsma_error(result)
    return ErrorObject(
        error_category=category, error_code=error_code,
        error_description=detail[:limits.TEXT_256_MAX], error_date_time=date_time(now_ns),
        error_parameters=[Metadata(key="ponteResult", value=str(int(result))),
                          Metadata(key="ponteResultName", value=result.name)])


def error_response(result: Result, detail: str, now_ns: int,
                   code: tuple[str, str] | None = None,
                   headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    """The hub's answer refusing a request: status from the category, errorObject body."""
    error = error_object(result, detail, now_ns, code)
    status = CATEGORY_STATUS[error.error_category]
    if status == 503:
        headers = headers + ((b"retry-after", b"1"),)
    return Response(status, _encode(error), headers=headers)


# What the HTTP server's own refusals (framing, bounds) mean as results.
_RESULT_BY_STATUS: dict[int, Result] = {
    400: Result.MALFORMED_SYNTAX, 404: Result.VALIDATION_ERROR, 405: Result.VALIDATION_ERROR,
    408: Result.COMMUNICATION_ERROR, 411: Result.VALIDATION_ERROR,
    413: Result.VALIDATION_ERROR, 414: Result.VALIDATION_ERROR, 415: Result.VALIDATION_ERROR,
    431: Result.VALIDATION_ERROR, 500: Result.INTERNAL_SERVER_ERROR,
    503: Result.SERVICE_UNAVAILABLE,
}


def protocol_error(status: int, detail: str) -> Response:
    """The HTTP server's `ErrorFactory`: a framing or bound failure, as an errorObject (its
    status is HTTP's own: 411, 413, 414, 431 are below the API)."""
    result = _RESULT_BY_STATUS.get(status, Result.MALFORMED_SYNTAX)
    error = error_object(result, detail, time.time_ns())
    return Response(status, _encode(error))


def markdown_table() -> str:
    """The error table of docs/mobilemoney.md (a test checks the doc agrees)."""
    rows = ["| Ponte result | code | errorCategory | errorCode | HTTP |", "|---|---:|---|---|---:|"]
    for member in Result:
        category, code = gsma_error(member)
        rows.append(f"| `{member.name}` | {int(member)} | {category} | {code} | "
                    f"{CATEGORY_STATUS[category]} |")
    return "\n".join(rows)


def _check_table() -> None:
    codes = {"genericError", "dailyValueLimitExceeded", "greaterThanTransactionMaxValue",
             "lessThanTransactionMinValue", "maxBalanceExceeded", "samePartiesError",
             "duplicateRequest", "insufficientFunds", "incorrectState",
             "overPaymentNotAllowed", "rateLimitError", "transactionTypeError",
             "identifierError", "formatError", "negativeValue", "currencyNotSupported",
             "mandatoryValueNotSupplied", "invalidOffset", "clientAuthorisationError",
             "requestDeclined", "requestingPartyAuthorisationError"}
    for member in Result:
        category, code = gsma_error(member)
        assert category in CATEGORY_STATUS, member
        assert code in codes, member
    for category, code in (NEGATIVE_VALUE, MANDATORY_VALUE, IDENTIFIER_ERROR,
                           TRANSACTION_TYPE_ERROR, NOT_AUTHORISED, INVALID_OFFSET):
        assert category in CATEGORY_STATUS and code in codes


_check_table()
