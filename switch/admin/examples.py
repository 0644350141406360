"""Examples for the admin API's OpenAPI document: every request body and every answer,
success and refusal, shown the way the API sends them.

Each example is built from the real msgspec type and turned into JSON by msgspec, so an
example can never drift from what the API accepts or answers (a test decodes every
request example with its handler's type). `app.py` attaches them to the handlers. Nothing
here is used to answer a request; it must never hold a real key, password or token.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body

from switch.admin.types import (
    HTTP_STATUS,
    AccountProposal,
    AdminError,
    AdminResult,
    Alert,
    AuditRecordView,
    AuditVerification,
    CallbackUrlProposal,
    Categories,
    CategoryProposal,
    CategoryView,
    CertificateProposal,
    CurrencyProposal,
    DailyLimitProposal,
    Decision,
    DefundProposal,
    G2PBatchProposal,
    FspiopParticipantProposal,
    MobileMoneyWalletProposal,
    DirectoryPanel,
    FundProposal,
    Health,
    KeyRotationProposal,
    LoginRequest,
    NetDebitCapProposal,
    OnboardProposal,
    Overview,
    ParticipantView,
    PositionView,
    ProposalBody,
    ProposalView,
    SessionView,
    TimelineStep,
    TransferSearch,
    TransferSummary,
    TransferTimeline,
    UserCreate,
    UserView,
)
from switch.core.messages import SchemeRules

T0 = 1_714_564_800_000_000_000  # 2024-05-01 12:00:00 UTC
MS = 1_000_000
PROPOSAL_ID = "p-3f9c2a71d04b8e65"
CSRF = "Zk3v9Qe6yW1sX0bT5uN8mA2cR7pL4dH6jF0gK9eS1qY"  # an example, not a real token


def _example(summary: str, value) -> Example:
    return Example(summary=summary, value=msgspec.to_builtins(value))


# -- request bodies ------------------------------------------------------------------------

LOGIN = LoginRequest(username="alice", password="correct horse battery staple")
USER = UserCreate(username="bob", password="a long and unguessable passphrase", role="operator")
PROPOSALS: list[tuple[str, ProposalBody]] = [
    ("Fund a prefunded account (minor units: 5,000.00 BRL)",
     FundProposal(participant_id=2, currency="BRL", amount_minor=500_000,
                  note="opening float, letter of 30 April")),
    ("Pay out of a prefunded account",
     DefundProposal(participant_id=2, currency="BRL", amount_minor=120_000)),
    ("Set a deferred-net cap",
     NetDebitCapProposal(participant_id=3, currency="KES", cap_minor=250_000_000)),
    ("A participant's own daily total (null: the scheme's rule)",
     DailyLimitProposal(participant_id=2, currency="BRL", daily_total_max_minor=90_000_000)),
    ("Carry a currency", CurrencyProposal(
        currency="KES", ledger_id=404, settlement_model="deferred_net",
        rules=SchemeRules(transfer_max_minor=100_000_000, fee_fixed_minor=1, fee_bps=5,
                          payee_timeout_ms=10_000))),
    ("Onboard a bank, funded, in category C", OnboardProposal(
        name="Banco Exemplo", participant_kind="bank", currencies=["BRL"],
        callback_url="https://ponte.banco-exemplo.example/callbacks", category="C",
        funding_minor=100_000_000)),
    ("Open one more currency account", AccountProposal(participant_id=2, currency="KES")),
    ("Move the HTTP callbacks", CallbackUrlProposal(
        participant_id=2, callback_url="https://ponte.banco-exemplo.example/v2")),
    ("Rotate the API key, revoking the others", KeyRotationProposal(participant_id=2)),
    ("Accept a TLS client certificate", CertificateProposal(
        participant_id=2, fingerprint_sha256="9f86d081884c7d659a2feaa0c55ad015"
                                             "a3bf4f1b2b0b822cd15d6c15b0f00a08")),
    ("Put a participant in another directory category",
     CategoryProposal(participant_id=2, category="B")),
    ("Pause a programme's G2P batch", G2PBatchProposal(
        participant_id=5, transaction_id="pension-2026-12", action="pause",
        note="the ministry asked to hold December's pensions")),
    ("Put a wallet on the GSMA Mobile Money API hub",
     MobileMoneyWalletProposal(participant_id=4, api_url="https://mm.carteira.example/mm",
                               credit_type="transfer", auth="oauth2")),
    ("Put a DFSP on the FSPIOP hub, with its JWS key (PEM, shortened here)",
     FspiopParticipantProposal(participant_id=5, fsp_id="bankfive",
                               endpoint="https://fspiop.bankfive.example/inbound",
                               public_key_pem="-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0B"
                                              "AQEFAAOCAQ8AMIIBCgKCAQEA...\n-----END PUBLIC KEY-----\n",
                               note="key from the letter of 2 May")),
]
DECISIONS = [("Approve", Decision(approve=True, note="checked against the signed letter")),
             ("Reject", Decision(approve=False, note="amount differs from the letter"))]

LoginBody = Annotated[LoginRequest, Body(examples=[_example("Log in", LOGIN)])]
UserBody = Annotated[UserCreate, Body(examples=[_example("A second operator", USER)])]
ProposalRequest = Annotated[ProposalBody, Body(
    description="One change, selected by `kind`.",
    examples=[_example(summary, body) for summary, body in PROPOSALS])]
DecisionBody = Annotated[Decision, Body(
    examples=[_example(summary, body) for summary, body in DECISIONS])]

# -- answers ---------------------------------------------------------------------------------

SESSION = SessionView(username="alice", role="admin", csrf_token=CSRF,
                      expires_at_ns=T0 + 12 * 3600 * 10**9)
USER_VIEW = UserView(username="bob", role="operator", created_ns=T0, disabled=False)
POSITION = PositionView(
    currency="BRL", exponent=2, settlement_model="prefunded_rtgs", account_id=4_295_032_833,
    limit_minor=100_000_000, used_minor=2_345_600, available_minor=97_654_400,
    reserved_minor=45_600, net_debit_cap_minor=0, daily_used_minor=2_300_000,
    daily_max_minor=1_000_000_000_000_000_000)
PARTICIPANT = ParticipantView(
    participant_id=2, name="Banco Exemplo", status="active", currencies=["BRL"],
    positions=[POSITION], kind="bank",
    callback_url="https://ponte.banco-exemplo.example/callbacks", category="C")
CATEGORIES = Categories(default="E", categories=[
    CategoryView(category="A", capacity_tokens=50_000, refill_tokens_per_minute=25_000,
                 hit_cost_tokens=1, miss_cost_tokens=3),
    CategoryView(category="E", capacity_tokens=5_000, refill_tokens_per_minute=2_500,
                 hit_cost_tokens=1, miss_cost_tokens=3),
    CategoryView(category="H", capacity_tokens=50, refill_tokens_per_minute=2,
                 hit_cost_tokens=1, miss_cost_tokens=3)])
_FUND = PROPOSALS[0][1]
PENDING = ProposalView(
    proposal_id=PROPOSAL_ID, kind="fund", participant_id=2, currency="BRL", body=_FUND,
    state="pending", proposed_by="alice", proposed_ns=T0, decided_by="", decided_ns=0,
    core_result=0, detail="")
EXECUTED = msgspec.structs.replace(PENDING, state="executed", decided_by="bob",
                                   decided_ns=T0 + 60 * 10**9,
                                   detail="checked against the signed letter")
ONBOARDED = ProposalView(
    proposal_id="p-b81e07c4a9d2356f", kind="onboard", participant_id=7, currency="",
    body=msgspec.structs.replace(PROPOSALS[5][1], participant_id=7), state="executed",
    proposed_by="alice", proposed_ns=T0, decided_by="carol", decided_ns=T0 + 90 * 10**9,
    core_result=0, detail="api key 5c1d9e0a7b3f", api_key_id="5c1d9e0a7b3f",
    api_key="ponte_5c1d9e0a7b3f_EXAMPLE-NOT-A-REAL-KEY-shown-once")
FAILED = msgspec.structs.replace(
    EXECUTED, kind="defund", body=PROPOSALS[1][1], state="failed", core_result=6401,
    detail="ADMIN_FUNDS_INSUFFICIENT")
SUMMARY = TransferSummary(
    payer_participant_id=2, transfer_id="tx-20240501-000042", payee_participant_id=3,
    amount_minor=4_321, fee_minor=2, currency="BRL", state="committed", result=0,
    result_name="OK", end_to_end_id="E2E-20240501-42", received_ns=T0 + 3 * MS,
    decided_ns=T0 + 11 * MS)
SEARCH = TransferSearch(transfers=[SUMMARY], scanned=1_250, complete=True,
                        next_before_seq=9_871)
TIMELINE = TransferTimeline(transfer=SUMMARY, steps=[
    TimelineStep(at_ns=T0 + 3 * MS, kind="message", name="received",
                 detail="transfer request from the payer"),
    TimelineStep(at_ns=T0 + 3 * MS, kind="ledger", name="reserve (pending)",
                 detail="payment 43.21 BRL, ledger id 79003"),
    TimelineStep(at_ns=T0 + 4 * MS, kind="message", name="forwarded",
                 detail="credit request sent to the payee"),
    TimelineStep(at_ns=T0 + 11 * MS, kind="message", name="committed",
                 detail="payee accepted; outcome COMMITTED sent to payer and payee"),
    TimelineStep(at_ns=T0 + 11 * MS, kind="ledger", name="post",
                 detail="payment 43.21 BRL, ledger id 79002")])
AUDIT = AuditRecordView(
    seq=214, at_ns=T0 + 90 * 10**9, actor="carol", action="proposal.execute",
    target="p-b81e07c4a9d2356f", result="OK",
    detail='{"core_result":"OK","api_key_id":"5c1d9e0a7b3f"}', client="10.0.4.17",
    record_hash="9c0e1d5f4a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d")
VERIFIED = AuditVerification(ok=True, records_checked=214, anchored_seq=212)
BROKEN = AuditVerification(
    ok=False, records_checked=199, first_broken_seq=200, anchored_seq=212,
    reason="the chain ends at record 199, but record 212 was anchored in the switch's "
           "journal: records were removed from its end")
DIRECTORY = DirectoryPanel(aliases_by_type={"MSISDN": 18_250, "NATIONAL_ID": 9_100},
                           aliases_by_participant={"2": 15_000, "3": 12_350},
                           resolve_total=48_210, resolve_found=47_015, resolve_rate=0.9752,
                           rate_limited_total=12, open_claims=3)
OVERVIEW = Overview(
    at_ns=T0, transfers_per_s=412.6, success_rate=0.9981, latency_p50_ms=3.41,
    latency_p99_ms=11.27, outcomes={"OK": 120_455, "PAYEE_REJECTED": 231},
    transfers_total=120_686, in_flight=17,
    alerts=[Alert(kind="near_limit", severity="warning",
                  text="Banco Exemplo (2) has used 83% of its BRL liquidity")])
HEALTH = Health(status="ok", checks={"sequencer": "ok", "gateway": "ok", "journal": "ok"})

# Refusals, by status: every AdminResult the API can answer with that status.
_REFUSAL_DETAIL = {
    AdminResult.NOT_AUTHENTICATED: "log in first",
    AdminResult.CSRF_TOKEN_INVALID: "missing or wrong CSRF token: reload the page",
    AdminResult.ROLE_INSUFFICIENT: "proposal.onboard needs the admin role",
    AdminResult.VALIDATION_ERROR: "Expected `int` >= 1 - at `$.amount_minor`",
    AdminResult.LOGIN_RATE_LIMITED: "too many failed logins",
    AdminResult.LOGIN_FAILED: "wrong username or password",
    AdminResult.LOGIN_BUSY: "too many logins at once; try again",
    AdminResult.USER_EXISTS: "",
    AdminResult.USER_NOT_FOUND: "",
    AdminResult.USERS_FULL: "",
    AdminResult.PARTICIPANT_NOT_FOUND: "participant 99",
    AdminResult.PROPOSAL_NOT_FOUND: "",
    AdminResult.PROPOSAL_NOT_PENDING: "executed",
    AdminResult.PROPOSAL_EXPIRED: "",
    AdminResult.CHECKER_MUST_DIFFER: "a different operator must check this proposal",
    AdminResult.PROPOSALS_FULL: "",
    AdminResult.TRANSFER_NOT_FOUND: "not retained by the switch (older transfers: the journal)",
    AdminResult.SWITCH_REFUSED: "ADMIN_SETTLEMENT_MODEL_MISMATCH: KES is deferred-net: change "
                                "the net debit cap",
    AdminResult.SWITCH_UNAVAILABLE: "the switch is not accepting requests",
}
assert set(_REFUSAL_DETAIL) == set(AdminResult) - {AdminResult.OK}


def _refusal(result: AdminResult) -> AdminError:
    return AdminError(
        result=result.name, code=int(result), detail=_REFUSAL_DETAIL[result],
        core_result=6104 if result is AdminResult.SWITCH_REFUSED else 0,
        retry_after_s={AdminResult.LOGIN_RATE_LIMITED: 540,
                       AdminResult.LOGIN_BUSY: 1}.get(result, 0))


_STATUS_TEXT = {400: "Refused: the body or a parameter broke its type; nothing changed",
                401: "Refused: no session (or a failed login); nothing changed",
                403: "Refused: CSRF token, role, or the maker checking their own proposal",
                404: "Refused: no such participant, proposal, transfer or operator",
                409: "Refused: the state does not allow it; nothing changed",
                429: "Refused: too many failed logins (Retry-After)",
                503: "Refused: the switch (or password hashing) cannot take it now"}


def refusals(*results: AdminResult) -> dict[int, ResponseSpec]:
    """One response per HTTP status, with an AdminError example per result given."""
    by_status: dict[int, list[AdminResult]] = {}
    for result in results:
        by_status.setdefault(HTTP_STATUS[result], []).append(result)
    return {status: ResponseSpec(
        data_container=AdminError, description=_STATUS_TEXT[status], generate_examples=False,
        examples=[_example(result.name, _refusal(result)) for result in members])
        for status, members in by_status.items()}


def answer(status: int, data_type, *examples: tuple[str, object],
           description: str = "Done") -> dict[int, ResponseSpec]:
    return {status: ResponseSpec(
        data_container=data_type, description=description, generate_examples=False,
        examples=[_example(summary, value) for summary, value in examples])}


R = AdminResult
# Every request with a session may meet these; every change also the CSRF check.
_READ = (R.NOT_AUTHENTICATED, R.VALIDATION_ERROR)
_CHANGE = (*_READ, R.CSRF_TOKEN_INVALID, R.ROLE_INSUFFICIENT)

RESPONSES: dict[str, dict[int, ResponseSpec]] = {
    "api_login": {**answer(200, SessionView, ("Logged in: send csrf_token as X-CSRF-Token",
                                              SESSION)),
                  **refusals(R.VALIDATION_ERROR, R.LOGIN_FAILED, R.LOGIN_RATE_LIMITED,
                             R.LOGIN_BUSY)},
    "api_session": {**answer(200, SessionView, ("The session", SESSION)),
                    **refusals(R.NOT_AUTHENTICATED)},
    "api_logout": {**answer(200, dict, ("Logged out", {"result": "OK"})),
                   **refusals(R.NOT_AUTHENTICATED, R.CSRF_TOKEN_INVALID)},
    "api_users": {**answer(200, list[UserView], ("Operators", [USER_VIEW])),
                  **refusals(*_READ)},
    "api_create_user": {**answer(201, UserView, ("Created", USER_VIEW)),
                        **refusals(*_CHANGE, R.USER_EXISTS, R.USERS_FULL, R.LOGIN_BUSY)},
    "api_disable_user": {**answer(200, UserView, ("Disabled", msgspec.structs.replace(
                             USER_VIEW, disabled=True))),
                         **refusals(*_CHANGE, R.USER_NOT_FOUND)},
    "api_enable_user": {**answer(200, UserView, ("Enabled", USER_VIEW)),
                        **refusals(*_CHANGE, R.USER_NOT_FOUND)},
    "api_participants": {**answer(200, list[ParticipantView], ("Participants", [PARTICIPANT])),
                         **refusals(*_READ)},
    "api_participant": {**answer(200, ParticipantView, ("One participant", PARTICIPANT)),
                        **refusals(*_READ, R.PARTICIPANT_NOT_FOUND)},
    "api_suspend": {**answer(200, ParticipantView, ("Suspended", msgspec.structs.replace(
                        PARTICIPANT, status="suspended"))),
                    **refusals(*_CHANGE, R.PARTICIPANT_NOT_FOUND, R.SWITCH_REFUSED,
                               R.SWITCH_UNAVAILABLE)},
    "api_resume": {**answer(200, ParticipantView, ("Resumed", PARTICIPANT)),
                   **refusals(*_CHANGE, R.PARTICIPANT_NOT_FOUND, R.SWITCH_REFUSED,
                              R.SWITCH_UNAVAILABLE)},
    "api_categories": {**answer(200, Categories, ("Categories", CATEGORIES)),
                       **refusals(R.NOT_AUTHENTICATED)},
    "api_proposals": {**answer(200, list[ProposalView], ("Pending", [PENDING])),
                      **refusals(*_READ)},
    "api_propose": {**answer(201, ProposalView, ("Recorded, waiting for a checker", PENDING),
                             description="Proposed"),
                    **refusals(*_CHANGE, R.PARTICIPANT_NOT_FOUND, R.PROPOSALS_FULL,
                               R.SWITCH_REFUSED)},
    "api_proposal": {**answer(200, ProposalView, ("One proposal", EXECUTED)),
                     **refusals(*_READ, R.PROPOSAL_NOT_FOUND)},
    "api_decide": {**answer(200, ProposalView,
                            ("Approved and carried out", EXECUTED),
                            ("Approved onboarding: the new API key, this once", ONBOARDED),
                            ("Approved, but refused when carried out", FAILED),
                            description="Decided"),
                   **refusals(*_CHANGE, R.PROPOSAL_NOT_FOUND, R.PROPOSAL_NOT_PENDING,
                              R.PROPOSAL_EXPIRED, R.CHECKER_MUST_DIFFER,
                              R.SWITCH_UNAVAILABLE)},
    "api_transfers": {**answer(200, TransferSearch, ("A page, newest first", SEARCH)),
                      **refusals(*_READ)},
    "api_timeline": {**answer(200, TransferTimeline, ("Committed in 8 ms", TIMELINE)),
                     **refusals(*_READ, R.TRANSFER_NOT_FOUND)},
    "api_audit": {**answer(200, list[AuditRecordView], ("Newest first", [AUDIT])),
                  **refusals(*_READ)},
    "api_audit_verify": {**answer(200, AuditVerification, ("Intact", VERIFIED),
                                  ("Truncated after the anchor", BROKEN)),
                         **refusals(R.NOT_AUTHENTICATED)},
    "api_directory": {**answer(200, DirectoryPanel, ("The directory", DIRECTORY)),
                      **refusals(R.NOT_AUTHENTICATED)},
    "api_overview": {**answer(200, Overview, ("Live numbers", OVERVIEW)),
                     **refusals(R.NOT_AUTHENTICATED)},
    "health": {**answer(200, Health, ("Healthy", HEALTH)),
               **answer(503, Health, ("Degraded", msgspec.structs.replace(
                   HEALTH, status="degraded", checks={**HEALTH.checks,
                                                      "gateway": "not accepting"})),
                        description="Degraded")},
}
