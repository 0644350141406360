"""Typed errors of the HTTP connector: the JSON error body and the HTTP status of each result.

Every refusal the connector writes is `{"result": <code>, "name": "<Result member>",
"detail": "..."}` with the status the result's FSPIOP family implies (`http_status`). The
same body is used for protocol failures found by the server (bad framing, bounds), so a
participant parses one error shape. This module must never decide an outcome: it only
says how an outcome decided elsewhere is written on HTTP.
"""

from __future__ import annotations

import msgspec

from connectors.http.server import Response
from switch.core.results import Result, family


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of every non-2xx answer of the connector."""

    result: int  # a `Result` member's number (FSPIOP four-digit error code)
    name: str  # the member's name, e.g. "VALIDATION_ERROR"
    detail: str = ""  # for a bad body: msgspec's message, which names the field ($.path)
    retry_after_ms: int = 0  # with LOOKUP_RATE_LIMITED: when to try again (also Retry-After)


# Exceptions to the family rule below, for codes whose meaning is more specific.
_STATUS_BY_RESULT: dict[Result, int] = {
    Result.OK: 200,
    Result.INTERNAL_SERVER_ERROR: 500,
    Result.SERVICE_UNAVAILABLE: 503,
    Result.SERVER_BUSY: 503,
    Result.LOOKUP_RATE_LIMITED: 429,
    Result.COMMUNICATION_ERROR: 502,
    Result.INVALID_SIGNATURE: 401,
    Result.EXISTS_WITH_DIFFERENT_PARTY: 409,
    Result.EXISTS_WITH_DIFFERENT_AMOUNT: 409,
    Result.EXISTS_WITH_DIFFERENT_CURRENCY: 409,
    Result.EXISTS_WITH_DIFFERENT_BODY: 409,
    Result.PAYER_BLOCKED: 403,
    Result.PAYEE_BLOCKED: 403,
    # settlement statements and reconciliation (switch/settlement)
    Result.STATEMENT_WINDOW_NOT_FOUND: 404,
    Result.STATEMENT_WINDOW_OPEN: 409,
    Result.RECONCILIATION_TOO_LARGE: 413,
}
_STATUS_BY_FAMILY = {
    "success": 200,
    "communication": 502,
    "server": 500,
    "validation": 400,
    "not found": 404,
    "expired": 410,
    "client": 400,
    "payer": 422,  # well-formed, but the payer's side cannot do it (limits, liquidity)
    "payee": 422,
    "operator": 409,
}

# What the server's protocol-level refusals (by HTTP status) mean as results.
_RESULT_BY_STATUS: dict[int, Result] = {
    400: Result.MALFORMED_SYNTAX,
    401: Result.INVALID_SIGNATURE,
    404: Result.VALIDATION_ERROR,
    405: Result.VALIDATION_ERROR,
    408: Result.COMMUNICATION_ERROR,
    411: Result.VALIDATION_ERROR,
    413: Result.VALIDATION_ERROR,
    414: Result.VALIDATION_ERROR,
    415: Result.VALIDATION_ERROR,
    431: Result.VALIDATION_ERROR,
    500: Result.INTERNAL_SERVER_ERROR,
    503: Result.SERVICE_UNAVAILABLE,
}

_encode = msgspec.json.Encoder().encode
_bodies: dict[tuple[Result, str], bytes] = {}
_BODIES_CACHED_MAX = 1024


def http_status(result: Result) -> int:
    """The HTTP status a result implies: its family's, unless the table says otherwise."""
    status = _STATUS_BY_RESULT.get(result)
    if status is None:
        status = _STATUS_BY_FAMILY[family(result)]
    return status


def error_body(result: Result, detail: str = "") -> bytes:
    # Refusals repeat (the same few results and details under load): cache their bytes.
    key = (result, detail)
    body = _bodies.get(key)
    if body is None:
        body = _encode(ErrorBody(result=int(result), name=result.name, detail=detail))
        if len(_bodies) < _BODIES_CACHED_MAX:
            _bodies[key] = body
    return body


def rate_limited_response(retry_after_ms: int) -> Response:
    """LOOKUP_RATE_LIMITED: 429 with Retry-After (whole seconds, rounded up) and the exact
    wait in the body's `retry_after_ms`."""
    retry_after_s = max(1, -(-retry_after_ms // 1000))
    body = _encode(ErrorBody(result=int(Result.LOOKUP_RATE_LIMITED),
                             name=Result.LOOKUP_RATE_LIMITED.name, retry_after_ms=retry_after_ms))
    return Response(429, body, headers=((b"retry-after", str(retry_after_s).encode()),))


def error_response(result: Result, detail: str = "", status: int | None = None,
                   headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    """The typed error answer for `result` (status from its family unless given)."""
    if status is None:
        status = http_status(result)
    if result is Result.SERVER_BUSY or result is Result.SERVICE_UNAVAILABLE:
        headers = headers + ((b"retry-after", b"1"),)
    return Response(status, error_body(result, detail), headers=headers)


def protocol_error(status: int, detail: str) -> Response:
    """The server's `ErrorFactory`: a framing or bound failure as a typed error."""
    result = _RESULT_BY_STATUS.get(status, Result.MALFORMED_SYNTAX)
    return Response(status, error_body(result, detail))


def _check_statuses() -> None:
    for member in Result:
        assert 200 <= http_status(member) <= 599, member


_check_statuses()
