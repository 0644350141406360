"""FSPIOP error codes: the ONE table from Ponte's `Result` to the spec's 1xxx-5xxx codes, and
the error bodies the hub writes.

Every member of `Result` has a row (a test walks them in declaration order), so any outcome
the core, the shell or the gateway can hand the connector becomes one FSPIOP error code.
Ponte's numbers already follow FSPIOP's families; where Ponte is finer than the spec (its
3110-3123 validation codes, its limit and overflow codes, its operator 6xxx family) the row
names the spec code a DFSP understands. This module decides nothing: it only says how an
outcome decided elsewhere is written in FSPIOP.
"""

from __future__ import annotations

import msgspec

from connectors.fspiop import limits
from switch.core.results import DESCRIPTIONS, Result

_R = Result

# Result -> (FSPIOP errorCode, HTTP status when it is answered at once instead of by callback)
FSPIOP_CODES: dict[Result, tuple[str, int]] = {
    _R.OK: ("0000", 200),  # never written: success has no error body
    _R.COMMUNICATION_ERROR: ("1000", 502),
    _R.INTERNAL_SERVER_ERROR: ("2001", 500),
    _R.SERVICE_UNAVAILABLE: ("2003", 503),
    _R.INVALID_SIGNATURE: ("3105", 401),
    _R.MALFORMED_SYNTAX: ("3101", 400),
    _R.VALIDATION_ERROR: ("3100", 400),
    _R.PARTY_NOT_FOUND: ("3204", 404),
    # The anti-enumeration buckets: "try later", never a hint about the alias.
    _R.LOOKUP_RATE_LIMITED: ("2003", 503),
    _R.ID_INVALID: ("3100", 400),
    _R.TRANSFER_NOT_FOUND: ("3208", 404),
    _R.REQUEST_NOT_FOUND: ("3206", 404),
    # FSPIOP has one code for any change under a used id: "Modified request".
    _R.EXISTS_WITH_DIFFERENT_PARTY: ("3106", 400),
    _R.EXISTS_WITH_DIFFERENT_AMOUNT: ("3106", 400),
    _R.EXISTS_WITH_DIFFERENT_CURRENCY: ("3106", 400),
    _R.EXISTS_WITH_DIFFERENT_BODY: ("3106", 400),
    _R.AMOUNT_INVALID: ("3100", 400),
    _R.TRANSFER_EXPIRED: ("3303", 400),
    _R.REQUEST_EXPIRED: ("3301", 400),
    _R.EXPIRY_TOO_FAR: ("3100", 400),
    _R.PAYER_NOT_FOUND: ("3202", 404),
    _R.PAYEE_NOT_FOUND: ("3203", 404),
    _R.PAYER_AND_PAYEE_SAME: ("3100", 400),
    _R.CURRENCY_NOT_SUPPORTED: ("3100", 400),
    _R.SERVER_BUSY: ("2005", 503),
    _R.ORIGINAL_TRANSFER_NOT_FOUND: ("3208", 404),
    _R.RETURN_ORIGINAL_NOT_COMMITTED: ("3100", 400),
    _R.RETURN_PARTIES_MISMATCH: ("3100", 400),
    _R.RETURN_WINDOW_CLOSED: ("3100", 400),
    _R.PAYER_BLOCKED: ("4400", 403),
    _R.PAYEE_BLOCKED: ("5400", 403),
    _R.PAYER_CURRENCY_NOT_ENABLED: ("4103", 400),
    _R.PAYEE_CURRENCY_NOT_ENABLED: ("5106", 400),
    _R.RETURN_EXCEEDS_ORIGINAL: ("3100", 400),
    _R.AMOUNT_ABOVE_TRANSFER_MAX: ("4200", 400),
    _R.PAYER_DAILY_LIMIT_EXCEEDED: ("4200", 400),
    _R.PAYEE_ACCOUNT_OVERFLOW: ("5200", 400),
    _R.HUB_ACCOUNT_OVERFLOW: ("2001", 500),
    _R.PAYER_INSUFFICIENT_LIQUIDITY: ("4001", 400),
    # Mojaloop's hub aborts a transfer whose fulfilment does not match: a validation error.
    _R.FULFILMENT_INVALID: ("3100", 400),
    _R.PAYEE_REJECTED: ("5104", 400),
    _R.PAYER_REJECTED_REQUEST: ("4101", 400),
    # Operator requests never reach a DFSP; should one leak here it is the hub's fault.
    _R.ADMIN_CURRENCY_EXISTS: ("2001", 500),
    _R.ADMIN_CURRENCY_NOT_FOUND: ("2001", 500),
    _R.ADMIN_PARTICIPANT_EXISTS: ("2001", 500),
    _R.ADMIN_PARTICIPANT_NOT_FOUND: ("2001", 500),
    _R.ADMIN_ACCOUNT_EXISTS: ("2001", 500),
    _R.ADMIN_ACCOUNT_NOT_FOUND: ("2001", 500),
    _R.ADMIN_SETTLEMENT_MODEL_MISMATCH: ("2001", 500),
    _R.ADMIN_TABLE_FULL: ("2001", 500),
    _R.ADMIN_FUNDS_INSUFFICIENT: ("2001", 500),
    _R.ADMIN_CAP_BELOW_POSITION: ("2001", 500),
    _R.ADMIN_ACCOUNT_OVERFLOW: ("2001", 500),
    # G2P results (connectors/g2p) are answered to programmes on the G2P API only, like
    # operator requests: should one leak here it is the hub's fault.
    _R.G2P_NOT_A_PROGRAMME: ("2001", 500),
    _R.G2P_MESSAGE_TOO_LARGE: ("2001", 500),
    _R.G2P_BATCH_TOO_LARGE: ("2001", 500),
    _R.G2P_BATCH_NOT_FOUND: ("2001", 500),
    _R.G2P_BATCH_CLOSED: ("2001", 500),
    _R.G2P_REFERENCE_DUPLICATE: ("2001", 500),
    _R.G2P_PAYEE_UNMAPPED: ("2001", 500),
    _R.G2P_BATCH_STATE: ("2001", 500),
}

# Codes the hub writes that are not a Result (header and protocol checks of FSPIOP itself).
UNACCEPTABLE_VERSION = "3001"
UNKNOWN_URI = "3002"
MISSING_ELEMENT = "3102"
PAYLOAD_TOO_LARGE = "3104"
DESTINATION_NOT_FOUND = "3201"  # FSPIOP's "Destination FSP Error"
QUOTE_NOT_FOUND = "3205"
GENERIC_ID_NOT_FOUND = "3200"
NOT_IMPLEMENTED = "2002"
PAYEE_QUOTE_REJECTED = "5101"

_STATUS_BY_CODE = {"3001": 406, "3002": 404, "3102": 400, "3104": 413, "3201": 400,
                   "3205": 404, "3200": 404, "2002": 501, "5101": 400}

assert set(FSPIOP_CODES) == set(Result)
assert all(len(code) == 4 and code.isdigit() for code, _ in FSPIOP_CODES.values())


class _ErrorInformation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    errorCode: str  # noqa: N815 - the spec's names
    errorDescription: str  # noqa: N815


class ErrorInformationObject(msgspec.Struct, frozen=True, kw_only=True):
    """The body of every `.../error` callback and of a synchronous 4xx/5xx answer (the
    spec's ErrorInformationObject and ErrorInformationResponse have the same shape)."""

    errorInformation: _ErrorInformation  # noqa: N815


_encode = msgspec.json.Encoder().encode


def code_of(result: Result) -> str:
    return FSPIOP_CODES[result][0]


def status_of_code(code: str) -> int:
    for known, status in FSPIOP_CODES.values():
        if known == code:
            return status
    return _STATUS_BY_CODE.get(code, 400)


def description(text: str) -> str:
    """An errorDescription: 1 to 128 characters, whatever the detail was."""
    text = text.strip() or "error"
    return text[:limits.ERROR_DESCRIPTION_LENGTH_MAX]


def error_body(code: str, detail: str) -> bytes:
    return _encode(ErrorInformationObject(errorInformation=_ErrorInformation(
        errorCode=code, errorDescription=description(detail))))


def result_body(result: Result, detail: str = "") -> bytes:
    """The error body for a Ponte outcome: its FSPIOP code, Ponte's description (and name)."""
    text = detail or f"{result.name}: {DESCRIPTIONS[result]}"
    return error_body(code_of(result), text)
