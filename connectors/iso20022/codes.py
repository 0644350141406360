"""The one table between ISO 20022 status reason codes and Ponte's `Result` codes.

`REASONS` lists every ISO code the connector writes or understands, with the results it
stands for. Read it both ways:
- out (`reason_for(result)`): a pacs.002 / pain.014 RJCT carries the first code whose row
  names the result (every `Result` member has one: a table test walks them all);
- in (`result_for(code)`): what a code from a bank means to Ponte, for codes a bank
  gives (a payee's pacs.002 RJCT, a payer's pain.014 RJCT) the core still records
  PAYEE_REJECTED / PAYER_REJECTED_REQUEST, and the code travels in the answer's reason
  ("AM04 ...") so the other side, ISO or not, sees the bank's own code.

docs/result-codes.md shows the out direction as a column (`result_codes_markdown`), and
docs/iso20022.md the whole table. This module must never decide an outcome.
"""

from __future__ import annotations

import re

from switch.core.results import Result, markdown_table

R = Result

# (ISO code, ISO name, the Ponte results it stands for: the first is what it means inbound)
REASONS: tuple[tuple[str, str, tuple[Result, ...]], ...] = (
    ("AC01", "IncorrectAccountNumber", (R.PARTY_NOT_FOUND,)),
    ("AC03", "InvalidCreditorAccountNumber", (R.PAYEE_REJECTED,)),
    ("AC04", "ClosedAccountNumber", (R.PAYEE_REJECTED,)),
    ("AC06", "BlockedAccount", (R.PAYER_BLOCKED, R.PAYEE_BLOCKED)),
    ("AG01", "TransactionForbidden", (R.PAYER_CURRENCY_NOT_ENABLED,
                                      R.PAYEE_CURRENCY_NOT_ENABLED, R.PAYER_AND_PAYEE_SAME,
                                      R.RETURN_ORIGINAL_NOT_COMMITTED,
                                      R.ORIGINAL_TRANSFER_NOT_FOUND)),
    ("AG03", "TransactionNotSupported", (R.PAYEE_REJECTED,)),
    ("AM02", "NotAllowedAmount", (R.AMOUNT_ABOVE_TRANSFER_MAX,)),
    ("AM03", "NotAllowedCurrency", (R.CURRENCY_NOT_SUPPORTED,)),
    ("AM04", "InsufficientFunds", (R.PAYER_INSUFFICIENT_LIQUIDITY,)),
    ("AM09", "WrongAmount", (R.AMOUNT_INVALID, R.RETURN_EXCEEDS_ORIGINAL)),
    ("AM14", "AmountExceedsAgreedLimit", (R.PAYER_DAILY_LIMIT_EXCEEDED,)),
    ("AB05", "TimeoutCreditorAgent", (R.TRANSFER_EXPIRED,)),
    ("AB06", "TimeoutInstructedAgent", (R.TRANSFER_EXPIRED,)),
    ("BE01", "InconsistenWithEndCustomer", (R.RETURN_PARTIES_MISMATCH,)),
    ("DT01", "InvalidDate", (R.EXPIRY_TOO_FAR,)),
    ("DUPL", "DuplicatePayment", (R.EXISTS_WITH_DIFFERENT_PARTY,
                                  R.EXISTS_WITH_DIFFERENT_AMOUNT,
                                  R.EXISTS_WITH_DIFFERENT_CURRENCY,
                                  R.EXISTS_WITH_DIFFERENT_BODY)),
    ("FF01", "InvalidFileFormat", (R.VALIDATION_ERROR, R.MALFORMED_SYNTAX, R.ID_INVALID,
                                   R.INVALID_SIGNATURE, R.FULFILMENT_INVALID)),
    ("MS02", "NotSpecifiedReasonCustomerGenerated", (R.PAYER_REJECTED_REQUEST,)),
    ("MS03", "NotSpecifiedReasonAgentGenerated", (R.PAYEE_REJECTED, R.COMMUNICATION_ERROR,
                                                  R.INTERNAL_SERVER_ERROR,
                                                  R.SERVICE_UNAVAILABLE, R.SERVER_BUSY,
                                                  R.LOOKUP_RATE_LIMITED,
                                                  R.PAYEE_ACCOUNT_OVERFLOW,
                                                  R.HUB_ACCOUNT_OVERFLOW)),
    ("NARR", "Narrative", (R.PAYEE_REJECTED,)),
    ("RC01", "BankIdentifierIncorrect", (R.PAYER_NOT_FOUND, R.PAYEE_NOT_FOUND)),
    ("RR04", "RegulatoryReason", (R.PAYEE_REJECTED,)),
    ("TM01", "InvalidCutOffTime", (R.TRANSFER_EXPIRED, R.REQUEST_EXPIRED,
                                   R.RETURN_WINDOW_CLOSED)),
    ("NOOR", "NoOriginalTransactionReceived", (R.TRANSFER_NOT_FOUND, R.REQUEST_NOT_FOUND)),
)

# Results that have no ISO meaning at all (operator requests, and the G2P API's own answers
# to programmes, 37xx: no bank ever sees them).
NOT_SENT_TO_BANKS = frozenset(member for member in Result
                              if int(member) >= 6000 or 3700 <= int(member) < 3800)

_OUT: dict[Result, str] = {}
for _code, _name, _results in REASONS:
    for _result in _results:
        _OUT.setdefault(_result, _code)
# A payee's or payer's refusal without a code of its own: agent-generated, unspecified.
_OUT[R.PAYEE_REJECTED] = "MS03"
_IN: dict[str, Result] = {code: results[0] for code, _, results in REASONS}
NAMES: dict[str, str] = {code: name for code, name, _ in REASONS}
_CODE = re.compile(r"^([A-Z0-9]{4})(?: |$)")

assert all(len(code) == 4 for code in NAMES)
assert len(NAMES) == len(REASONS)


def reason_for(result: Result, reason_text: str = "") -> str:
    """The ISO status reason code for a refusal: the bank's own code when `reason_text`
    starts with one (a payee's rejection carried through), else the table's."""
    if reason_text:
        found = _CODE.match(reason_text)
        if found is not None and result in (R.PAYEE_REJECTED, R.PAYER_REJECTED_REQUEST):
            return found.group(1)
    return _OUT[result]


def result_for(code: str) -> Result:
    """What an ISO reason code from a bank means to Ponte (unknown codes: a refusal by the
    bank, PAYEE_REJECTED)."""
    return _IN.get(code, R.PAYEE_REJECTED)


def reason_text(code: str, additional: str = "") -> str:
    """The core's `reason` text for a bank's refusal: its code first, so that it travels."""
    text = f"{code} {additional}".strip() if additional else code
    return text[:140]


def iso_column() -> dict[Result, str]:
    return {member: ("" if member in NOT_SENT_TO_BANKS or member is R.OK else _OUT[member])
            for member in Result}


def result_codes_markdown() -> str:
    """docs/result-codes.md: the core's table with the ISO 20022 column."""
    return markdown_table(columns=(("ISO 20022", iso_column()),))


def _check() -> None:
    for member in Result:
        if member is R.OK or member in NOT_SENT_TO_BANKS:
            continue
        assert member in _OUT, member


_check()
