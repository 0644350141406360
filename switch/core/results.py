"""Outcome codes and states of the switch core: what a participant or operator is told.

`Result` numbers are a wire format (FSPIOP-style four-digit error codes): never renumber a
member; add new ones in the place where their check runs. Members are declared in the order
the checks run; each flow (transfer, return, payee answer, status query, request-to-pay,
operator request) runs a subsequence of that order, and an approved request-to-pay restarts
the order with the transfer it becomes. `docs/result-codes.md` is generated from this enum
(`markdown_table()`) and a test checks the two agree.

This module must never import anything that does I/O.
"""

from __future__ import annotations

from enum import IntEnum


class Result(IntEnum):
    """One outcome, FSPIOP families: 1xxx communication, 2xxx server, 3xxx client (31xx
    validation, 32xx not found, 33xx expired), 4xxx payer, 5xxx payee; 6xxx is Ponte's own
    family for operator (admin) requests, which FSPIOP does not cover."""

    OK = 0
    # -- answered by the shell or a connector before the core sees anything --------------
    COMMUNICATION_ERROR = 1000
    INTERNAL_SERVER_ERROR = 2001
    SERVICE_UNAVAILABLE = 2003
    INVALID_SIGNATURE = 3105
    MALFORMED_SYNTAX = 3101
    VALIDATION_ERROR = 3100
    PARTY_NOT_FOUND = 3204
    LOOKUP_RATE_LIMITED = 3170
    # -- participant flows, in check order -----------------------------------------------
    ID_INVALID = 3110
    TRANSFER_NOT_FOUND = 3208
    REQUEST_NOT_FOUND = 3206
    EXISTS_WITH_DIFFERENT_PARTY = 3151
    EXISTS_WITH_DIFFERENT_AMOUNT = 3152
    EXISTS_WITH_DIFFERENT_CURRENCY = 3153
    EXISTS_WITH_DIFFERENT_BODY = 3106
    AMOUNT_INVALID = 3111
    TRANSFER_EXPIRED = 3303
    REQUEST_EXPIRED = 3301
    EXPIRY_TOO_FAR = 3112
    PAYER_NOT_FOUND = 3202
    PAYEE_NOT_FOUND = 3203
    PAYER_AND_PAYEE_SAME = 3113
    CURRENCY_NOT_SUPPORTED = 3114
    SERVER_BUSY = 2005
    # (from here on a transfer is recorded: a resend answers the same, within the window)
    ORIGINAL_TRANSFER_NOT_FOUND = 3230
    RETURN_ORIGINAL_NOT_COMMITTED = 3120
    RETURN_PARTIES_MISMATCH = 3121
    RETURN_WINDOW_CLOSED = 3124
    PAYER_BLOCKED = 4400
    PAYEE_BLOCKED = 5400
    PAYER_CURRENCY_NOT_ENABLED = 4103
    PAYEE_CURRENCY_NOT_ENABLED = 5106
    RETURN_EXCEEDS_ORIGINAL = 3123
    AMOUNT_ABOVE_TRANSFER_MAX = 4201
    PAYER_DAILY_LIMIT_EXCEEDED = 4202
    # The ledger decides these three in one call (the reserve), leg by leg (payment, then
    # fee), each leg's credit-side overflow before the payer's funds: see docs/core.md.
    PAYEE_ACCOUNT_OVERFLOW = 5201
    HUB_ACCOUNT_OVERFLOW = 2006
    PAYER_INSUFFICIENT_LIQUIDITY = 4001
    # The payee accepted a conditional transfer without the fulfilment of its condition: the
    # reserve is voided, as Mojaloop's hub aborts a transfer with an invalid fulfilment.
    FULFILMENT_INVALID = 3901
    PAYEE_REJECTED = 5104
    PAYER_REJECTED_REQUEST = 4101
    # -- operator requests, in check order (after VALIDATION_ERROR, EXISTS_WITH_DIFFERENT_BODY)
    ADMIN_CURRENCY_EXISTS = 6101
    ADMIN_CURRENCY_NOT_FOUND = 6201
    ADMIN_PARTICIPANT_EXISTS = 6102
    ADMIN_PARTICIPANT_NOT_FOUND = 6202
    ADMIN_ACCOUNT_EXISTS = 6103
    ADMIN_ACCOUNT_NOT_FOUND = 6203
    ADMIN_SETTLEMENT_MODEL_MISMATCH = 6104
    ADMIN_TABLE_FULL = 6001
    ADMIN_FUNDS_INSUFFICIENT = 6401
    ADMIN_CAP_BELOW_POSITION = 6402
    ADMIN_ACCOUNT_OVERFLOW = 6403
    # -- G2P disbursement (switch/g2p, connectors/g2p), answered before the core, in the
    # order the G2P connector checks a message, then a row, then an operator's batch action.
    G2P_NOT_A_PROGRAMME = 3701
    G2P_MESSAGE_TOO_LARGE = 3702
    G2P_BATCH_TOO_LARGE = 3703
    G2P_BATCH_NOT_FOUND = 3704
    G2P_BATCH_CLOSED = 3705
    G2P_REFERENCE_DUPLICATE = 3706
    G2P_PAYEE_UNMAPPED = 3707
    G2P_BATCH_STATE = 3708


# Members the core never emits: the shell, a connector or the directory answers them before
# an event reaches the core. A test checks the core produces none of them.
SHELL_ONLY = frozenset({
    Result.COMMUNICATION_ERROR,
    Result.INTERNAL_SERVER_ERROR,
    Result.SERVICE_UNAVAILABLE,
    Result.INVALID_SIGNATURE,
    Result.MALFORMED_SYNTAX,
    Result.PARTY_NOT_FOUND,
    Result.LOOKUP_RATE_LIMITED,
    Result.G2P_NOT_A_PROGRAMME,
    Result.G2P_MESSAGE_TOO_LARGE,
    Result.G2P_BATCH_TOO_LARGE,
    Result.G2P_BATCH_NOT_FOUND,
    Result.G2P_BATCH_CLOSED,
    Result.G2P_REFERENCE_DUPLICATE,
    Result.G2P_PAYEE_UNMAPPED,
    Result.G2P_BATCH_STATE,
})

# What each member means, for docs/result-codes.md and for error descriptions on the wire
# (FSPIOP's errorDescription is at most 128 characters).
DESCRIPTIONS: dict[Result, str] = {
    Result.OK: "Success: the transfer committed / the request was carried out.",
    Result.COMMUNICATION_ERROR: "Connection-level failure; nothing reached the core.",
    Result.INTERNAL_SERVER_ERROR: "The switch hit a bug; nothing was decided.",
    Result.SERVICE_UNAVAILABLE: "The switch is starting, recovering or shutting down.",
    Result.INVALID_SIGNATURE: "The body's detached signature did not verify.",
    Result.MALFORMED_SYNTAX: "The frame or body could not be decoded.",
    Result.VALIDATION_ERROR: "A field broke its schema constraint (length, pattern, range).",
    Result.PARTY_NOT_FOUND: "The directory has no such alias (answered by the directory).",
    Result.LOOKUP_RATE_LIMITED: "The payer's anti-enumeration lookup bucket is empty; retry after retry_after_ms.",
    Result.ID_INVALID: "An id is empty, too long or not of the id grammar (ASCII letters, digits, '.', '_', ':', '-').",
    Result.TRANSFER_NOT_FOUND: "No such transfer for this participant (status, payee answer).",
    Result.REQUEST_NOT_FOUND: "No such request-to-pay for this participant.",
    Result.EXISTS_WITH_DIFFERENT_PARTY: "Id already used with a different counterparty.",
    Result.EXISTS_WITH_DIFFERENT_AMOUNT: "Id already used with a different amount.",
    Result.EXISTS_WITH_DIFFERENT_CURRENCY: "Id already used with a different currency.",
    Result.EXISTS_WITH_DIFFERENT_BODY: "Id already used with a different body (modified request).",
    Result.AMOUNT_INVALID: "Amount is not a positive integer of minor units within bounds.",
    Result.TRANSFER_EXPIRED: "The transfer expired (payer expiry or payee timeout) before commit.",
    Result.REQUEST_EXPIRED: "The request-to-pay expired before the payer decided.",
    Result.EXPIRY_TOO_FAR: "The expiry is further ahead than the scheme allows.",
    Result.PAYER_NOT_FOUND: "The payer participant is not registered.",
    Result.PAYEE_NOT_FOUND: "The payee participant is not registered.",
    Result.PAYER_AND_PAYEE_SAME: "Payer and payee participant are the same (on-us).",
    Result.CURRENCY_NOT_SUPPORTED: "The scheme does not carry this currency.",
    Result.SERVER_BUSY: "The switch's in-flight or retained tables are full; retry later.",
    Result.ORIGINAL_TRANSFER_NOT_FOUND: "The transfer to return is unknown or beyond the window.",
    Result.RETURN_ORIGINAL_NOT_COMMITTED: "The transfer to return did not commit.",
    Result.RETURN_PARTIES_MISMATCH: "Only the original payee can return a transfer.",
    Result.RETURN_WINDOW_CLOSED: "The original was decided longer ago than the scheme's return window.",
    Result.PAYER_BLOCKED: "The payer participant is suspended.",
    Result.PAYEE_BLOCKED: "The payee participant is suspended.",
    Result.PAYER_CURRENCY_NOT_ENABLED: "The payer participant has no account in this currency.",
    Result.PAYEE_CURRENCY_NOT_ENABLED: "The payee participant has no account in this currency.",
    Result.RETURN_EXCEEDS_ORIGINAL: "Returns would add up to more than the original amount.",
    Result.AMOUNT_ABOVE_TRANSFER_MAX: "Amount is above the scheme's per-transfer maximum.",
    Result.PAYER_DAILY_LIMIT_EXCEEDED: "The payer participant's daily total would be exceeded.",
    Result.PAYEE_ACCOUNT_OVERFLOW: "The payee's ledger account totals would pass 2**64-1 minor units: it cannot be credited more.",
    Result.HUB_ACCOUNT_OVERFLOW: "The hub's fee account totals would pass 2**64-1 minor units: no fee can be credited to it.",
    Result.PAYER_INSUFFICIENT_LIQUIDITY: "Payer's prefunding or net debit cap cannot cover it.",
    Result.FULFILMENT_INVALID: "The payee accepted a conditional transfer without a fulfilment whose SHA-256 is its condition.",
    Result.PAYEE_REJECTED: "The payee participant rejected the credit.",
    Result.PAYER_REJECTED_REQUEST: "The payer declined the request-to-pay.",
    Result.ADMIN_CURRENCY_EXISTS: "Operator: the currency is already configured.",
    Result.ADMIN_CURRENCY_NOT_FOUND: "Operator: no such currency.",
    Result.ADMIN_PARTICIPANT_EXISTS: "Operator: the participant id or name is already used.",
    Result.ADMIN_PARTICIPANT_NOT_FOUND: "Operator: no such participant.",
    Result.ADMIN_ACCOUNT_EXISTS: "Operator: the participant already has this currency.",
    Result.ADMIN_ACCOUNT_NOT_FOUND: "Operator: the participant has no account in this currency.",
    Result.ADMIN_SETTLEMENT_MODEL_MISMATCH: "Operator: funding is for prefunded currencies, caps for deferred-net.",
    Result.ADMIN_TABLE_FULL: "Operator: the participant or currency table is full.",
    Result.ADMIN_FUNDS_INSUFFICIENT: "Operator: the withdrawal is more than the available balance.",
    Result.ADMIN_CAP_BELOW_POSITION: "Operator: the new cap is below the participant's current net debit.",
    Result.ADMIN_ACCOUNT_OVERFLOW: "Operator: a ledger account's totals would pass 2**64-1 minor units (detail names it).",
    Result.G2P_NOT_A_PROGRAMME: "G2P: only a participant of kind government may disburse.",
    Result.G2P_MESSAGE_TOO_LARGE: "G2P: more rows in one message than a message may carry.",
    Result.G2P_BATCH_TOO_LARGE: "G2P: the batch would pass its row maximum (1,000,000).",
    Result.G2P_BATCH_NOT_FOUND: "G2P: no such batch for this programme (another programme's batch is not found).",
    Result.G2P_BATCH_CLOSED: "G2P: the batch was cancelled: it takes no more rows.",
    Result.G2P_REFERENCE_DUPLICATE: "G2P: the row's reference_id is in the batch already with other content.",
    Result.G2P_PAYEE_UNMAPPED: "G2P: the mapper has no account linked to the beneficiary's national ID.",
    Result.G2P_BATCH_STATE: "G2P: the batch's state does not allow this action (pause, resume, cancel).",
}


def family(result: Result) -> str:
    """The FSPIOP family a code belongs to, by its leading digits."""
    value = int(result)
    if value == 0:
        return "success"
    if value >= 6000:
        return "operator"
    head = value // 1000
    if head == 1:
        return "communication"
    if head == 2:
        return "server"
    if head == 3:
        sub = value // 100 % 10
        return {1: "validation", 2: "not found", 3: "expired"}.get(sub, "client")
    if head == 4:
        return "payer"
    assert head == 5
    return "payee"


class TransferState(IntEnum):
    """Where a transfer stands. RECEIVED and RESERVED are passed through inside the step that
    accepts the request (the ledger reserve and the credit request are decided together);
    a status query sees FORWARDED and then one of the three final states."""

    RECEIVED = 0
    RESERVED = 1
    FORWARDED = 2
    COMMITTED = 3
    REJECTED = 4
    EXPIRED = 5


TRANSFER_FINAL_STATES = frozenset(
    {TransferState.COMMITTED, TransferState.REJECTED, TransferState.EXPIRED}
)


class RequestToPayState(IntEnum):
    """Where a request-to-pay stands. OPEN waits for the payer; the rest are final."""

    OPEN = 1
    APPROVED = 2
    DECLINED = 3
    EXPIRED = 4
    REJECTED = 5  # refused by the switch when it was made (see the result)


class ParticipantStatus(IntEnum):
    ACTIVE = 1
    SUSPENDED = 2


class SettlementModel(IntEnum):
    """Per currency. See docs/ledger-accounts.md."""

    PREFUNDED_RTGS = 1
    DEFERRED_NET = 2


class ProtocolError(Exception):
    """A peer broke the protocol (e.g. a payee answering a transfer it was never sent).

    Business outcomes never raise; this does, and the core's state is unchanged when it is
    raised. The shell answers the peer with `result` (and `http_status` on HTTP) and may
    close a stream connection that keeps doing it.
    """

    def __init__(self, participant_id: int, result: Result, http_status: int, detail: str):
        super().__init__(f"participant {participant_id}: {result.name}: {detail}")
        self.participant_id = participant_id
        self.result = result
        self.http_status = http_status
        self.detail = detail


assert set(DESCRIPTIONS) == set(Result)
assert all(len(text) <= 128 for text in DESCRIPTIONS.values())
assert len({int(member) for member in Result}) == len(Result)


def markdown_table(columns: tuple[tuple[str, dict[Result, str]], ...] = ()) -> str:
    """docs/result-codes.md, generated: one table, rows in declaration (check) order.
    `columns`: extra (heading, {member: text}) columns a connector adds (its own codes for
    each result, e.g. ISO 20022 reasons); docs/result-codes.md is written with all of them
    (`connectors.iso20022.codes.result_codes_markdown`)."""
    lines = [
        "# Result codes",
        "",
        "Generated from `switch/core/results.py` (`results.markdown_table()`); a test",
        "checks this file agrees with the enum. Rows are in declaration order, which is the",
        "order the checks run (each flow runs a subsequence; an approved request-to-pay",
        "restarts the order with its transfer). Numbers are stable and follow the FSPIOP",
        "families: 1xxx communication, 2xxx server, 3xxx client (31xx validation, 32xx not",
        "found, 33xx expired), 4xxx payer, 5xxx payee; 6xxx is Ponte's family for operator",
        "requests. \"shell\" rows are answered before the core (by the server, a connector or",
        "the directory); the core never emits them.",
        "",
        "| code | name | family | answered by | meaning |"
        + "".join(f" {heading} |" for heading, _ in columns),
        "|---:|---|---|---|---|" + "---|" * len(columns),
    ]
    for member in Result:
        where = "shell" if member in SHELL_ONLY else "core"
        extra = "".join(f" {f'`{text}`' if text else ''} |" for _, column in columns
                        for text in (column.get(member, ""),))
        lines.append(
            f"| {int(member)} | `{member.name}` | {family(member)} | {where} | "
            f"{DESCRIPTIONS[member]} |{extra}"
        )
    return "\n".join(lines) + "\n"

