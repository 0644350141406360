"""The operator service: every operator action, with its role check, maker-checker and audit.

HTTP-free: the JSON API and the console (`switch/admin/app.py`) call these methods with a
`Caller` and typed bodies (the `ponte` CLI goes through the JSON API), and turn an
`AdminRefusal` into a typed error. Every refusal is raised before anything changes; every
action that changes something is written to the hash-chained audit log, in the same store
transaction where the change is the store's (users, sessions, proposals) and right after
the switch answered where the change is the switch's.

Every change of money, limits, currencies, participants, API keys, certificates, callback
URLs and directory categories is a *proposal*: it reaches the switch only when a second
operator (holding the role the change needs) approves it. Only suspend/resume (an incident
measure that moves nothing) and operator management act at once. In-process code (tests,
`switch.admin.bootstrap`) may submit directly as the audited `SYSTEM` caller; no HTTP
route leads there. After every execution the audit head is anchored in the switch's journal.

It must never log or audit a password, a session token or an API key (a new key is returned
once, in the answer to the approval that issued it), and never change the switch other than
through `SwitchPort.submit` and the participant-settings calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from typing import Callable, NamedTuple

import msgspec

from switch.admin import limits
from switch.admin.audit import detail_text, verify_chain_async
from switch.admin.live import LiveStats
from switch.admin.money import exponent, format_minor
from switch.admin.passwords import Passwords, PasswordsBusy
from switch.admin.ports import (
    AdminStore,
    AuditEntry,
    SettlementPort,
    SettlementRefused,
    SwitchPort,
    SwitchUnavailable,
)
from switch.admin.ratelimit import LoginLimiter
from switch.admin.types import (
    G2PBatchProposal,
    PROPOSAL_ROLES,
    SETTLEMENT_PROPOSALS,
    AccountProposal,
    AdminRefusal,
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
    DirectoryPanel,
    FspiopParticipantProposal,
    FundProposal,
    Health,
    KeyRotationProposal,
    MobileMoneyWalletProposal,
    NetDebitCapProposal,
    OnboardProposal,
    Overview,
    Replication,
    ParticipantView,
    PositionView,
    Proposal,
    ProposalBody,
    ProposalState,
    ProposalView,
    Role,
    ROLE_NAMES,
    RtgsAnswerView,
    Session,
    SettlementAbortProposal,
    SettlementCloseProposal,
    SettlementConfirmProposal,
    SettlementScheduleProposal,
    TimelineStep,
    TransferQuery,
    TransferSearch,
    TransferSummary,
    TransferTimeline,
    User,
    UserCreate,
    UserView,
    proposal_currency,
    proposal_kind,
    proposal_participant_id,
)
from switch.core.accounts import Leg, TransferCode
from switch.core.messages import (
    AdminAnswer,
    AuditAnchored,
    CurrencyAdded,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    ParticipantDailyLimitSet,
    ParticipantResumed,
    ParticipantSuspended,
    SettlementAborted,
    SettlementConfirmed,
    SettlementScheduleSet,
    SettlementWindowClosed,
    TransferRequested,
)
from switch.core.results import (
    ParticipantStatus,
    Result,
    SettlementModel,
    TransferState,
    WindowState,
)

NS_PER_S = limits.NS_PER_S
log = logging.getLogger("ponte.admin")
_replace = msgspec.structs.replace
_RESULT_NAMES = {int(member): member.name for member in Result}
_LEG_NAMES = {
    Leg.RESERVE: "reserve (pending)", Leg.RESERVE_FEE: "reserve fee (pending)",
    Leg.POST: "post", Leg.POST_FEE: "post fee", Leg.VOID: "void", Leg.VOID_FEE: "void fee",
}
_STATE_TEXT = {
    "received": ("message", "transfer request from the payer"),
    "reserved": ("state", "funds reserved"),
    "forwarded": ("message", "credit request sent to the payee"),
    "committed": ("message", "payee accepted; outcome COMMITTED sent to payer and payee"),
    "rejected": ("message", "outcome REJECTED"),
    "expired": ("message", "payee timeout; outcome EXPIRED sent to payer and payee"),
}


class Caller(NamedTuple):
    """Who asks: from a session, or the local CLI (`ponte admin ...`)."""

    username: str
    role: Role
    client: str

    @classmethod
    def of(cls, session: Session, client: str) -> Caller:
        return cls(session.username, session.role, client)


# The caller of the in-process bootstrap and of work resumed at start: code in the switch's
# process, never an HTTP request. Audited like any operator.
SYSTEM = Caller("system", Role.ADMIN, "in-process")


class _Outcome(NamedTuple):
    """How carrying out a proposal ended: the switch's (or the settings') result, a detail,
    and for a key-issuing proposal the new key's id and the key (shown once)."""

    result: Result
    detail: str
    api_key_id: str = ""
    api_key: str = ""


def token_sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AdminService:
    def __init__(self, store: AdminStore, switch: SwitchPort, *,
                 passwords: Passwords | None = None, limiter: LoginLimiter | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 submit_timeout_s: float = limits.SUBMIT_TIMEOUT_S,
                 settlement: SettlementPort | None = None):
        self.store = store
        self.switch = switch
        self.settlement = settlement  # switch/settlement's service, when the switch runs it
        self.passwords = passwords or Passwords()
        self.limiter = limiter or LoginLimiter()
        self.clock_ns = clock_ns
        self.submit_timeout_s = submit_timeout_s
        self.live = LiveStats()
        self.login_rate_limited_total = 0
        self.login_busy_total = 0

    # -- audit ---------------------------------------------------------------------------

    def _entry(self, caller: Caller, action: str, target: str, result: AdminResult | str,
               detail: dict | None = None) -> AuditEntry:
        name = result.name if isinstance(result, AdminResult) else result
        return AuditEntry(at_ns=self.clock_ns(), actor=caller.username, action=action,
                          target=target, result=name, detail=detail_text(detail),
                          client=caller.client[:64])

    async def _audit(self, caller: Caller, action: str, target: str,
                     result: AdminResult | str, detail: dict | None = None) -> None:
        await self.store.append_audit(self._entry(caller, action, target, result, detail))

    async def require(self, caller: Caller, role: Role, action: str, target: str) -> None:
        """Refuse (and record the refusal) when the caller's role is below `role`."""
        if caller.role < role:
            await self._audit(caller, action, target, AdminResult.ROLE_INSUFFICIENT,
                              {"needs": role.name.lower(), "has": caller.role.name.lower()})
            raise AdminRefusal(AdminResult.ROLE_INSUFFICIENT,
                               f"{action} needs the {role.name.lower()} role")

    # -- sessions ------------------------------------------------------------------------

    async def login(self, username: str, password: str, client: str) -> tuple[str, Session]:
        """(cookie token, session). The token is returned once and only its hash is kept.

        The attempt is reserved in the rate limiter before the password is hashed and given
        back only when it was right (or never hashed), so a burst of simultaneous guesses
        gets no more hashes than the limit allows."""
        now_ns = self.clock_ns()
        wait_s = self.limiter.reserve(username, client, now_ns)
        if wait_s:
            # Not audited one by one: a flood would bury the log. Counted instead.
            self.login_rate_limited_total += 1
            raise AdminRefusal(AdminResult.LOGIN_RATE_LIMITED, "too many failed logins",
                               retry_after_s=wait_s)
        try:
            user = await self.store.get_user(username)
            usable = user is not None and not user.disabled
            ok = await self.passwords.verify(user.password_hash if usable else None, password)
        except PasswordsBusy:
            self.limiter.refund(username, client, now_ns)
            self.login_busy_total += 1
            raise AdminRefusal(AdminResult.LOGIN_BUSY, "too many logins at once; try again",
                               retry_after_s=1) from None
        anonymous = Caller("-", Role.VIEWER, client)
        if not ok:
            # The reserved attempt stays counted: it was a wrong guess.
            await self._audit(anonymous, "login", f"user:{username}", AdminResult.LOGIN_FAILED)
            raise AdminRefusal(AdminResult.LOGIN_FAILED, "wrong username or password")
        assert user is not None
        self.limiter.succeeded(username, client, now_ns)
        token = secrets.token_urlsafe(limits.SESSION_TOKEN_BYTES)
        session = Session(
            token_hash=token_sha256(token), username=user.username, role=user.role,
            csrf_token=secrets.token_urlsafe(limits.CSRF_TOKEN_BYTES), created_ns=now_ns,
            expires_ns=now_ns + limits.SESSION_LIFETIME_S * NS_PER_S, seen_ns=now_ns,
            client=client[:64],
        )
        caller = Caller(user.username, user.role, client)
        await self.store.insert_session(session, limits.SESSIONS_PER_USER_MAX,
                                        self._entry(caller, "login", f"user:{username}",
                                                    AdminResult.OK))
        return token, session

    async def session(self, token: str | None) -> Session | None:
        """The live session behind a cookie token, or None (unknown, expired or idle)."""
        if not token or len(token) > 128:
            return None
        token_hash = token_sha256(token)
        session = await self.store.get_session(token_hash)
        if session is None:
            return None
        now_ns = self.clock_ns()
        idle_since_ns = now_ns - limits.SESSION_IDLE_S * NS_PER_S
        if session.expires_ns <= now_ns or session.seen_ns <= idle_since_ns:
            await self.store.delete_session(token_hash, None)
            return None
        if now_ns - session.seen_ns >= NS_PER_S:  # one write per second at most
            await self.store.touch_session(token_hash, now_ns)
        return session

    async def logout(self, session: Session, client: str) -> None:
        caller = Caller.of(session, client)
        await self.store.delete_session(session.token_hash,
                                        self._entry(caller, "logout", f"user:{caller.username}",
                                                    AdminResult.OK))

    async def check_csrf(self, session: Session, supplied: str | None, client: str,
                         action: str) -> None:
        """A state-changing request must carry the session's token (header or form field)."""
        if supplied and hmac.compare_digest(supplied.encode(), session.csrf_token.encode()):
            return
        await self._audit(Caller.of(session, client), action, "csrf",
                          AdminResult.CSRF_TOKEN_INVALID)
        raise AdminRefusal(AdminResult.CSRF_TOKEN_INVALID,
                           "missing or wrong CSRF token: reload the page")

    # -- operators -----------------------------------------------------------------------

    async def create_user(self, caller: Caller, body: UserCreate) -> UserView:
        await self.require(caller, Role.ADMIN, "user.create", f"user:{body.username}")
        if await self.store.count_users() >= limits.USERS_MAX:
            raise AdminRefusal(AdminResult.USERS_FULL)
        try:
            password_hash = await self.passwords.hash(body.password)
        except PasswordsBusy:
            raise AdminRefusal(AdminResult.LOGIN_BUSY, "password hashing is busy; try again",
                               retry_after_s=1) from None
        user = User(username=body.username, role=ROLE_NAMES[body.role],
                    password_hash=password_hash, created_ns=self.clock_ns())
        entry = self._entry(caller, "user.create", f"user:{body.username}", AdminResult.OK,
                            {"role": body.role})
        if not await self.store.insert_user(user, entry):
            raise AdminRefusal(AdminResult.USER_EXISTS)
        return _user_view(user)

    async def users(self) -> list[UserView]:
        return [_user_view(user) for user in await self.store.list_users()]

    async def set_user_disabled(self, caller: Caller, username: str, disabled: bool) -> UserView:
        action = "user.disable" if disabled else "user.enable"
        await self.require(caller, Role.ADMIN, action, f"user:{username}")
        entry = self._entry(caller, action, f"user:{username}", AdminResult.OK)
        if not await self.store.set_user_disabled(username, disabled, entry):
            raise AdminRefusal(AdminResult.USER_NOT_FOUND)
        user = await self.store.get_user(username)
        assert user is not None
        return _user_view(user)

    # -- the switch ------------------------------------------------------------------------

    async def _submit(self, caller: Caller, action: str, target: str, event,
                      detail: dict, then: Callable[[], dict] | None = None) -> None:
        """Submit one operator event; audit its answer; refuse unless it is OK. `then`, once
        the switch said OK: its effect outside the core, whose result joins the audit."""
        detail = {**detail, "request_id": event.request_id}
        try:
            answer = await asyncio.wait_for(self.switch.submit(event), self.submit_timeout_s)
        except (SwitchUnavailable, asyncio.TimeoutError) as error:
            why = "no answer in time; it may still be decided" if isinstance(
                error, asyncio.TimeoutError) else str(error)
            await self._audit(caller, action, target, AdminResult.SWITCH_UNAVAILABLE,
                              {**detail, "why": why})
            raise AdminRefusal(AdminResult.SWITCH_UNAVAILABLE, why) from None
        if answer.result != Result.OK:
            name = _RESULT_NAMES.get(int(answer.result), str(int(answer.result)))
            await self._audit(caller, action, target, AdminResult.SWITCH_REFUSED,
                              {**detail, "core_result": name})
            raise AdminRefusal(AdminResult.SWITCH_REFUSED, f"{name} {answer.detail}".strip(),
                               core_result=int(answer.result))
        if then is not None:
            detail.update(then())
        await self._audit(caller, action, target, AdminResult.OK, detail)

    @staticmethod
    def _request_id(prefix: str) -> str:
        return f"{prefix}-{secrets.token_hex(8)}"

    def _participant(self, participant_id: int):
        view = self.switch.core.participant(participant_id)
        if view is None:
            raise AdminRefusal(AdminResult.PARTICIPANT_NOT_FOUND, f"participant {participant_id}")
        return view

    def _would_refuse(self, result: Result, detail: str) -> AdminRefusal:
        """A request the switch would refuse, refused before it is submitted."""
        return AdminRefusal(AdminResult.SWITCH_REFUSED, f"{result.name}: {detail}",
                            core_result=int(result))

    # -- participants --------------------------------------------------------------------

    def positions(self, participant_id: int) -> list[PositionView]:
        core, ledger = self.switch.core, self.switch.ledger
        view = self._participant(participant_id)
        ids = [core.account_id(participant_id, currency) for currency in view.currencies]
        accounts = {account.id: account for account in ledger.lookup_accounts(ids)}
        positions = []
        for currency, account_id in zip(view.currencies, ids):
            account = accounts.get(account_id)
            state = core.currency(currency)
            if account is None or state is None:
                continue
            used = account.debits_posted + account.debits_pending
            deferred = state.settlement_model == SettlementModel.DEFERRED_NET
            positions.append(PositionView(
                currency=currency, exponent=exponent(currency),
                settlement_model=state.settlement_model.name.lower(), account_id=account_id,
                limit_minor=account.credits_posted, used_minor=used,
                available_minor=account.credits_posted - used,
                reserved_minor=account.debits_pending,
                net_debit_cap_minor=core.net_debit_cap_minor(participant_id, currency)
                if deferred else 0,
                daily_used_minor=core.daily_used_minor(participant_id, currency),
                daily_max_minor=core.daily_max_minor(participant_id, currency),
            ))
        return positions

    def participant(self, participant_id: int) -> ParticipantView:
        view = self._participant(participant_id)
        kind, callback_url, key_ids = self.switch.participant_settings(participant_id)
        return ParticipantView(
            participant_id=view.participant_id, name=view.name,
            status=view.status.name.lower(), currencies=list(view.currencies),
            positions=self.positions(participant_id), kind=kind, callback_url=callback_url,
            api_key_ids=key_ids, category=self.switch.participant_category(participant_id),
        )

    def participants(self) -> list[ParticipantView]:
        return [self.participant(pid) for pid in sorted(self.switch.core.participant_ids())]

    def names(self) -> dict[int, str]:
        """participant id -> name, for pages that show names instead of numbers."""
        core = self.switch.core
        return {pid: core.participant(pid).name for pid in core.participant_ids()}

    def categories(self) -> Categories:
        policies, default = self.switch.categories()
        return Categories(default=default, categories=[
            CategoryView(category=name, capacity_tokens=policy.capacity_tokens,
                         refill_tokens_per_minute=policy.refill_tokens_per_minute,
                         hit_cost_tokens=policy.hit_cost_tokens,
                         miss_cost_tokens=policy.miss_cost_tokens)
            for name, policy in sorted(policies.items())])

    async def set_status(self, caller: Caller, participant_id: int,
                         suspend: bool) -> ParticipantView:
        """Suspend or resume at once: an incident measure, so one operator may take it; it
        moves no money and changes no limit, and it is audited."""
        action = "participant.suspend" if suspend else "participant.resume"
        target = f"participant:{participant_id}"
        await self.require(caller, Role.OPERATOR, action, target)
        self._participant(participant_id)
        event_type = ParticipantSuspended if suspend else ParticipantResumed
        # A suspended participant's live sessions close at once, on every door, and the
        # audit record of the suspension says how many (docs/operator-guide.md).
        then = (lambda: {"sessions_closed": self.switch.close_sessions(
            participant_id, "participant suspended")}) if suspend else None
        await self._submit(caller, action, target, event_type(
            request_id=self._request_id(action.split(".")[1]), participant_id=participant_id),
            {}, then=then)
        return self.participant(participant_id)

    # -- settlement (switch/settlement, docs/settlement.md) -------------------------------------

    def _check_settlement_proposal(self, body):
        """The core's checks of a settlement proposal, made when it is proposed."""
        core = self.switch.core
        if isinstance(body, (SettlementCloseProposal, SettlementScheduleProposal)):
            if core.currency(body.currency) is None:
                raise self._would_refuse(Result.ADMIN_CURRENCY_NOT_FOUND, body.currency)
            if isinstance(body, SettlementScheduleProposal):
                cutoffs = body.cutoffs_s
                if any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
                    raise self._would_refuse(Result.SETTLEMENT_SCHEDULE_INVALID,
                                             "cut-offs not strictly increasing")
                return body
            open_id = core.open_window_id(body.currency)
            if body.window_id != open_id:
                raise self._would_refuse(Result.SETTLEMENT_WINDOW_NOT_OPEN,
                                         f"window {open_id} is the open {body.currency} one")
            return body
        window = core.settlement_window(body.window_id)
        if window is None:
            raise AdminRefusal(AdminResult.SETTLEMENT_WINDOW_NOT_FOUND,
                               f"window {body.window_id}",
                               core_result=int(Result.SETTLEMENT_WINDOW_NOT_FOUND))
        if window.state != WindowState.PENDING_SETTLEMENT:
            raise self._would_refuse(Result.SETTLEMENT_WINDOW_NOT_PENDING,
                                     f"window {body.window_id} is {window.state.name}")
        return body

    def _settlement_port(self) -> SettlementPort:
        if self.settlement is None:
            raise AdminRefusal(AdminResult.SWITCH_UNAVAILABLE, "settlement is not running here")
        return self.settlement

    @staticmethod
    def settlement_refusal(refused: SettlementRefused) -> AdminRefusal:
        """The operator API's answer to a refusal of the settlement port."""
        result = refused.result
        detail = f"{result.name}: {refused.detail}".rstrip(": ")
        if result in (Result.SETTLEMENT_WINDOW_NOT_FOUND, Result.STATEMENT_WINDOW_NOT_FOUND):
            return AdminRefusal(AdminResult.SETTLEMENT_WINDOW_NOT_FOUND, detail,
                                core_result=int(result))
        if result in (Result.SETTLEMENT_DOCUMENT_INVALID, Result.STATEMENT_FORMAT_UNKNOWN):
            return AdminRefusal(AdminResult.VALIDATION_ERROR, detail, core_result=int(result))
        if result in (Result.SERVER_BUSY, Result.SERVICE_UNAVAILABLE):
            return AdminRefusal(AdminResult.SWITCH_UNAVAILABLE, detail, core_result=int(result))
        return AdminRefusal(AdminResult.SWITCH_REFUSED, detail, core_result=int(result))

    def settlement_windows(self, currency: str = "", limit: int = 100) -> list:
        return self._settlement_port().windows(currency, limit)

    def settlement_window(self, window_id: int):
        try:
            return self._settlement_port().window(window_id)
        except SettlementRefused as refused:
            raise self.settlement_refusal(refused) from None

    def settlement_instructions(self, window_id: int) -> bytes:
        try:
            return self._settlement_port().instructions(window_id)
        except SettlementRefused as refused:
            raise self.settlement_refusal(refused) from None

    async def settlement_statement(self, participant_id: int, window_id: int, fmt: str):
        """(media type, file name, chunks) of a participant's statement, for an operator."""
        try:
            return await self._settlement_port().statement(participant_id, window_id, fmt)
        except SettlementRefused as refused:
            raise self.settlement_refusal(refused) from None

    async def rtgs_answer(self, caller: Caller, data: bytes) -> RtgsAnswerView:
        """An RTGS answer (pacs.002) posted by the RTGS's operator account: an accepted one
        confirms its window (the RTGS's answer stands in for the checker: it is the system
        that moved the money), anything else is refused with its typed result and changes
        nothing (a rejection stays shown on the window). Audited either way."""
        action = "settlement.rtgs_answer"
        await self.require(caller, Role.OPERATOR, action, "rtgs")
        try:
            event, window_id = self._settlement_port().rtgs_answer(data)
        except SettlementRefused as refused:
            refusal = self.settlement_refusal(refused)
            await self._audit(caller, action, "rtgs", refusal.result,
                              {"core_result": refused.result.name, "why": refused.detail})
            raise refusal from None
        await self._submit(caller, action, f"window:{window_id}", event,
                           {"rtgs_reference": event.rtgs_reference})
        await self.anchor_audit()
        window = self.switch.core.settlement_window(window_id)
        return RtgsAnswerView(window_id=window_id, state=window.state.name.lower(),
                              rtgs_reference=window.rtgs_reference,
                              request_id=event.request_id)

    # -- in-process bootstrap ----------------------------------------------------------------

    async def submit_as_system(self, action: str, target: str, event, detail: dict) -> None:
        """For code in the switch's own process only (tests, `switch.admin.bootstrap`):
        submit an operator event without maker-checker, audited as actor `system`. There is
        no HTTP route to it; an operator always goes through a proposal."""
        await self._submit(SYSTEM, action, target, event, detail)

    async def record_as_system(self, action: str, target: str, detail: dict) -> None:
        """Audit a change the in-process bootstrap made outside the switch (credentials)."""
        await self._audit(SYSTEM, action, target, AdminResult.OK, detail)

    # -- maker-checker -------------------------------------------------------------------

    def _check_proposal(self, body: ProposalBody,
                        pending_onboard_ids: tuple[int, ...] = ()) -> ProposalBody:
        """The switch's own checks, made when the proposal is made, so a checker is never
        asked to approve something bound to fail (they run again when it is carried out).
        Returns the body to store (an onboarding without an id gets the next free one)."""
        core = self.switch.core
        if isinstance(body, SETTLEMENT_PROPOSALS):
            return self._check_settlement_proposal(body)
        if isinstance(body, CurrencyProposal):
            if core.currency(body.currency) is not None:
                raise self._would_refuse(Result.ADMIN_CURRENCY_EXISTS, body.currency)
            if any(core.currency(c).ledger_id == body.ledger_id for c in core.currencies()):
                raise self._would_refuse(Result.ADMIN_CURRENCY_EXISTS,
                                         f"ledger id {body.ledger_id} is in use")
            return body
        if isinstance(body, OnboardProposal):
            return self._check_onboarding(body, pending_onboard_ids)
        view = self._participant(body.participant_id)
        if isinstance(body, CategoryProposal):
            if body.category not in self.switch.categories()[0]:
                raise AdminRefusal(AdminResult.VALIDATION_ERROR,
                                   f"no bucket category {body.category!r}")
            return body
        if isinstance(body, (CallbackUrlProposal, KeyRotationProposal, CertificateProposal,
                             G2PBatchProposal, MobileMoneyWalletProposal)):
            return body
        if isinstance(body, FspiopParticipantProposal):
            try:
                self.switch.check_fspiop_participant(body.participant_id, _settings(body))
            except ValueError as error:
                raise AdminRefusal(AdminResult.VALIDATION_ERROR, str(error)[:200]) from None
            return body
        state = core.currency(body.currency)
        if state is None:
            raise self._would_refuse(Result.ADMIN_CURRENCY_NOT_FOUND, body.currency)
        if isinstance(body, AccountProposal):
            if body.currency in view.currencies:
                raise self._would_refuse(Result.ADMIN_ACCOUNT_EXISTS, body.currency)
            return body
        if body.currency not in view.currencies:
            raise self._would_refuse(Result.ADMIN_ACCOUNT_NOT_FOUND, body.currency)
        prefunded = state.settlement_model == SettlementModel.PREFUNDED_RTGS
        if isinstance(body, (FundProposal, DefundProposal)) and not prefunded:
            raise self._would_refuse(Result.ADMIN_SETTLEMENT_MODEL_MISMATCH,
                                     f"{body.currency} is deferred-net: change the net debit cap")
        if isinstance(body, NetDebitCapProposal) and prefunded:
            raise self._would_refuse(Result.ADMIN_SETTLEMENT_MODEL_MISMATCH,
                                     f"{body.currency} is prefunded: fund or defund instead")
        return body

    def _check_onboarding(self, body: OnboardProposal,
                          pending_onboard_ids: tuple[int, ...]) -> OnboardProposal:
        core = self.switch.core
        if len(set(body.currencies)) != len(body.currencies):
            raise AdminRefusal(AdminResult.VALIDATION_ERROR, "a currency is listed twice")
        models = set()
        for currency in body.currencies:
            state = core.currency(currency)
            if state is None:
                raise self._would_refuse(Result.ADMIN_CURRENCY_NOT_FOUND, currency)
            models.add(state.settlement_model)
        if body.funding_minor and SettlementModel.PREFUNDED_RTGS not in models:
            raise AdminRefusal(AdminResult.VALIDATION_ERROR,
                               "funding_minor needs a prefunded currency")
        if body.net_debit_cap_minor and SettlementModel.DEFERRED_NET not in models:
            raise AdminRefusal(AdminResult.VALIDATION_ERROR,
                               "net_debit_cap_minor needs a deferred-net currency")
        if body.category and body.category not in self.switch.categories()[0]:
            raise AdminRefusal(AdminResult.VALIDATION_ERROR,
                               f"no bucket category {body.category!r}")
        if body.participant_id == 0:
            taken = set(core.participant_ids()) | set(pending_onboard_ids)
            body = _replace(body, participant_id=max(taken, default=0) + 1)
        if core.participant(body.participant_id) is not None or (
                core.participant_id_by_name(body.name) is not None):
            raise self._would_refuse(Result.ADMIN_PARTICIPANT_EXISTS, "id or name in use")
        return body

    async def propose(self, caller: Caller, body: ProposalBody) -> ProposalView:
        kind = proposal_kind(body)
        target = _proposal_target(body)
        await self.require(caller, PROPOSAL_ROLES[kind], f"proposal.{kind}", target)
        pending_onboard_ids: tuple[int, ...] = ()
        if isinstance(body, OnboardProposal):
            # Two pending onboardings must not claim the same id or name.
            pending = [p.body for p in await self.store.list_proposals(
                ProposalState.PENDING, limits.PROPOSALS_OPEN_MAX)
                if isinstance(p.body, OnboardProposal)]
            pending_onboard_ids = tuple(p.participant_id for p in pending)
            if any(p.name == body.name or p.participant_id == body.participant_id != 0
                   for p in pending):
                raise AdminRefusal(AdminResult.VALIDATION_ERROR,
                                   "a pending onboarding has this id or name")
        body = self._check_proposal(body, pending_onboard_ids)
        proposal = Proposal(proposal_id=f"p-{secrets.token_hex(8)}", body=body,
                            state=ProposalState.PENDING, proposed_by=caller.username,
                            proposed_ns=self.clock_ns())
        entry = self._entry(caller, "proposal.propose", proposal.proposal_id, AdminResult.OK,
                            {"kind": kind, **msgspec.to_builtins(body)})
        if not await self.store.insert_proposal(proposal, limits.PROPOSALS_OPEN_MAX, entry):
            raise AdminRefusal(AdminResult.PROPOSALS_FULL)
        return _proposal_view(proposal)

    async def proposals(self, state: ProposalState | None = None,
                        limit: int = limits.AUDIT_PAGE_MAX) -> list[ProposalView]:
        return [_proposal_view(p) for p in await self.store.list_proposals(state, limit)]

    async def proposal(self, proposal_id: str) -> ProposalView:
        found = await self.store.get_proposal(proposal_id)
        if found is None:
            raise AdminRefusal(AdminResult.PROPOSAL_NOT_FOUND)
        return _proposal_view(found)

    async def decide(self, caller: Caller, proposal_id: str, decision: Decision) -> ProposalView:
        action = "proposal.approve" if decision.approve else "proposal.reject"
        await self.require(caller, Role.OPERATOR, action, proposal_id)
        proposal = await self.store.get_proposal(proposal_id)
        if proposal is None:
            raise AdminRefusal(AdminResult.PROPOSAL_NOT_FOUND)
        # The checker needs the role the change needs, like its maker.
        await self.require(caller, PROPOSAL_ROLES[proposal_kind(proposal.body)], action,
                           proposal_id)
        if proposal.state != ProposalState.PENDING:
            raise AdminRefusal(AdminResult.PROPOSAL_NOT_PENDING, proposal.state.name.lower())
        if proposal.proposed_by == caller.username:
            await self._audit(caller, action, proposal_id, AdminResult.CHECKER_MUST_DIFFER)
            raise AdminRefusal(AdminResult.CHECKER_MUST_DIFFER,
                               "a different operator must check this proposal")
        now_ns = self.clock_ns()
        if now_ns - proposal.proposed_ns > limits.PROPOSAL_TTL_S * NS_PER_S:
            expired = _replace(proposal, state=ProposalState.EXPIRED, decided_by=caller.username,
                               decided_ns=now_ns, detail="not checked in time")
            await self.store.decide_proposal(
                expired, ProposalState.PENDING,
                self._entry(caller, "proposal.expire", proposal_id, AdminResult.PROPOSAL_EXPIRED))
            raise AdminRefusal(AdminResult.PROPOSAL_EXPIRED)
        decided = _replace(proposal, decided_by=caller.username, decided_ns=now_ns,
                           detail=decision.note,
                           state=ProposalState.APPROVED if decision.approve
                           else ProposalState.REJECTED)
        entry = self._entry(caller, action, proposal_id, AdminResult.OK,
                            {"note": decision.note} if decision.note else None)
        if not await self.store.decide_proposal(decided, ProposalState.PENDING, entry):
            raise AdminRefusal(AdminResult.PROPOSAL_NOT_PENDING, "decided meanwhile")
        if not decision.approve:
            return _proposal_view(decided)
        return await self._execute(caller, decided)

    async def _execute(self, caller: Caller, proposal: Proposal, *,
                       reveal: bool = True) -> ProposalView:
        """Carry out an APPROVED proposal. Its switch events' request ids derive from the
        proposal id, so a re-submission after a crash is answered, not applied twice.
        `reveal`: a new API key may be issued and returned (to the approving checker, in
        this answer only); False when resuming after a restart, with nobody to show it to."""
        assert proposal.state == ProposalState.APPROVED
        try:
            outcome = await self._carry_out(proposal, reveal)
        except (SwitchUnavailable, asyncio.TimeoutError):
            await self._audit(caller, "proposal.execute", proposal.proposal_id,
                              AdminResult.SWITCH_UNAVAILABLE)
            # Stays APPROVED: `resume_approved` carries it out when the switch is back.
            raise AdminRefusal(AdminResult.SWITCH_UNAVAILABLE,
                               "approved; the switch will be asked again") from None
        result, detail, key_id, api_key = outcome
        ok = result == Result.OK
        name = _RESULT_NAMES.get(int(result), str(int(result)))
        final = _replace(proposal, state=ProposalState.EXECUTED if ok else ProposalState.FAILED,
                         core_result=int(result),
                         detail=("; ".join(part for part in (proposal.detail, detail) if part)
                                 if ok else f"{name} {detail}".strip()))
        audit_detail = {"core_result": name}
        if key_id:
            audit_detail["api_key_id"] = key_id  # the id only: never the key
        entry = self._entry(caller, "proposal.execute", proposal.proposal_id,
                            AdminResult.OK if ok else AdminResult.SWITCH_REFUSED, audit_detail)
        moved = await self.store.decide_proposal(final, ProposalState.APPROVED, entry)
        assert moved, "an APPROVED proposal is only moved by the one executing it"
        await self.anchor_audit()
        view = _proposal_view(final)
        if api_key:
            view = _replace(view, api_key_id=key_id, api_key=api_key)
        return view

    async def _ask(self, event) -> AdminAnswer:
        """One event to the switch; SwitchUnavailable / TimeoutError propagate."""
        return await asyncio.wait_for(self.switch.submit(event), self.submit_timeout_s)

    async def _carry_out(self, proposal: Proposal, reveal: bool) -> _Outcome:
        body = proposal.body
        pid = proposal.proposal_id
        if isinstance(body, OnboardProposal):
            return await self._carry_out_onboarding(pid, body, reveal)
        event = _proposal_event(proposal)
        if event is not None:
            answer = await self._ask(event)
            return _Outcome(answer.result, answer.detail)
        switch = self.switch
        try:
            if isinstance(body, CallbackUrlProposal):
                self._participant(body.participant_id)
                await switch.set_callback_url(body.participant_id, body.callback_url)
            elif isinstance(body, CertificateProposal):
                self._participant(body.participant_id)
                await switch.add_certificate(body.participant_id,
                                             bytes.fromhex(body.fingerprint_sha256))
            elif isinstance(body, CategoryProposal):
                self._participant(body.participant_id)
                switch.set_participant_category(body.participant_id, body.category)
            elif isinstance(body, G2PBatchProposal):
                self._participant(body.participant_id)
                result = await switch.g2p_batch_action(body.participant_id,
                                                       body.transaction_id, body.action)
                return _Outcome(result, "" if result == Result.OK else body.action)
            elif isinstance(body, MobileMoneyWalletProposal):
                self._participant(body.participant_id)
                switch.set_mobilemoney_wallet(body.participant_id, _settings(body))
            elif isinstance(body, FspiopParticipantProposal):
                self._participant(body.participant_id)
                switch.set_fspiop_participant(body.participant_id, _settings(body))
            else:
                assert isinstance(body, KeyRotationProposal)
                self._participant(body.participant_id)
                if not reveal:
                    return _Outcome(Result.SERVICE_UNAVAILABLE,
                                    "interrupted by a restart before its key could be shown; "
                                    "propose it again")
                key_id, api_key, closed = await switch.issue_api_key(body.participant_id,
                                                                     body.revoke_others)
                detail = f"api key {key_id}"
                if body.revoke_others:
                    detail += f"; others revoked, {closed} live sessions closed"
                return _Outcome(Result.OK, detail, key_id, api_key)
        except AdminRefusal as refusal:
            return _Outcome(Result.ADMIN_PARTICIPANT_NOT_FOUND, refusal.detail)
        except ValueError as error:
            return _Outcome(Result.VALIDATION_ERROR, str(error)[:200])
        return _Outcome(Result.OK, "")

    async def _carry_out_onboarding(self, pid: str, body: OnboardProposal,
                                    reveal: bool) -> _Outcome:
        """Credentials first (a refused URL or kind changes nothing in the core), then the
        participant, its accounts and their funding or cap, its category, and its first API
        key. A step the switch refuses stops it; the steps before it stay (each is one
        journaled, idempotent event) and the proposal is FAILED with that step named."""
        switch = self.switch
        core = switch.core
        participant_id = body.participant_id
        # Checked again before anything is written: the id or the name may have been taken
        # since the proposal was made. A participant with this id *and* name is this
        # proposal's own, half carried out before a crash: its steps are answered again.
        by_name = core.participant_id_by_name(body.name)
        existing = core.participant(participant_id)
        if (existing is not None or by_name is not None) and not (
                existing is not None and by_name == participant_id):
            return _Outcome(Result.ADMIN_PARTICIPANT_EXISTS, "id or name taken since proposed")
        for currency in body.currencies:
            if core.currency(currency) is None:
                return _Outcome(Result.ADMIN_CURRENCY_NOT_FOUND, currency)
        if body.category and body.category not in switch.categories()[0]:
            return _Outcome(Result.VALIDATION_ERROR, f"no bucket category {body.category!r}")
        try:
            await switch.register_participant(participant_id, body.name, body.participant_kind,
                                              body.callback_url)
        except ValueError as error:
            return _Outcome(Result.VALIDATION_ERROR, str(error)[:200])
        steps: list[tuple[str, object]] = [("add", ParticipantAdded(
            request_id=f"{pid}.add", participant_id=participant_id, name=body.name))]
        for currency in body.currencies:
            steps.append((f"open {currency}", ParticipantAccountOpened(
                request_id=f"{pid}.open.{currency}", participant_id=participant_id,
                currency=currency)))
            prefunded = core.currency(currency).settlement_model == SettlementModel.PREFUNDED_RTGS
            if prefunded and body.funding_minor:
                steps.append((f"fund {currency}", FundsDeposited(
                    request_id=f"{pid}.fund.{currency}", participant_id=participant_id,
                    currency=currency, amount_minor=body.funding_minor)))
            elif not prefunded and body.net_debit_cap_minor:
                steps.append((f"cap {currency}", NetDebitCapSet(
                    request_id=f"{pid}.cap.{currency}", participant_id=participant_id,
                    currency=currency, cap_minor=body.net_debit_cap_minor)))
        for step, event in steps:
            answer = await self._ask(event)
            if answer.result != Result.OK:
                return _Outcome(answer.result, f"at {step}: {answer.detail}".strip(": "))
        if body.category:
            try:
                switch.set_participant_category(participant_id, body.category)
            except ValueError as error:
                return _Outcome(Result.VALIDATION_ERROR, f"at category: {error}")
        if not reveal:
            return _Outcome(Result.OK, "carried out after a restart: no API key was issued; "
                                       "propose a key rotation")
        key_id, api_key, _ = await switch.issue_api_key(participant_id, False)
        return _Outcome(Result.OK, f"api key {key_id}", key_id, api_key)

    async def restore_settings(self) -> int:
        """At start: re-apply what operators chose outside the journal, the latest executed
        proposal of each participant: its directory category (onboarding and category
        proposals), its GSMA Mobile Money wallet settings, its FSPIOP hub registration
        (which replaces one from the configuration file). Returns how many were set."""
        if self.switch is None:
            return 0
        switch = self.switch
        return (await self._restore_latest(
                    ("onboard", "category"), lambda body: body.category or None,
                    switch.set_participant_category, "category_restore_failed")
                + await self._restore_latest(
                    ("mobilemoney_wallet",), _settings, switch.set_mobilemoney_wallet,
                    "mobilemoney_restore_failed")
                + await self._restore_latest(
                    ("fspiop_participant",), _settings, switch.set_fspiop_participant,
                    "fspiop_restore_failed"))

    async def _restore_latest(self, kinds: tuple[str, ...], value_of, apply,
                              event: str) -> int:
        """Apply, per participant, the value (`value_of(body)`, None: nothing) of the latest
        executed proposal of `kinds`; one the switch now refuses (its configuration changed)
        is logged and skipped. Returns how many were applied or tried."""
        chosen: dict[int, object] = {}
        for proposal in await self.store.executed_proposals(kinds):
            value = value_of(proposal.body)
            if value is not None:
                chosen[proposal.body.participant_id] = value
        for participant_id, value in chosen.items():
            try:
                apply(participant_id, value)
            except ValueError as error:
                log.warning("event=%s participant_id=%d why=%s", event, participant_id,
                            str(error)[:200])
        return len(chosen)

    async def resume_approved(self) -> int:
        """At start: carry out proposals approved before a crash. Returns how many were
        carried out; one the switch cannot take yet stays approved for the next start.
        No API key is issued here: nobody is there to be shown it."""
        approved = await self.store.list_proposals(ProposalState.APPROVED,
                                                   limits.PROPOSALS_OPEN_MAX)
        done = 0
        for proposal in approved:
            try:
                await self._execute(SYSTEM, proposal, reveal=False)
            except AdminRefusal as refusal:
                log.warning("event=proposal_resume_failed proposal_id=%s result=%s",
                            proposal.proposal_id, refusal.result.name)
                continue
            done += 1
        return done

    # -- transfers -----------------------------------------------------------------------

    def _summary(self, record) -> TransferSummary:
        trail = self.switch.trail
        received_ns = trail.received_ns(record.payer_participant_id, record.transfer_id) if (
            trail is not None) else 0
        if not received_ns:
            # Without a trail: the reserve leg's timestamp, or for a transfer refused at
            # admission its decision, taken in the same step as its receipt.
            received_ns = (self._leg_timestamp(record.seq, Leg.RESERVE) if record.forwarded
                           else record.decided_at_ns)
        event = record.event
        end_to_end_id = event.request.end_to_end_id if type(event) is TransferRequested else ""
        return TransferSummary(
            payer_participant_id=record.payer_participant_id, transfer_id=record.transfer_id,
            payee_participant_id=record.payee_participant_id,
            amount_minor=record.amount_minor, fee_minor=record.fee_minor,
            currency=record.currency, state=record.state.name.lower(),
            result=int(record.result), result_name=record.result.name,
            end_to_end_id=end_to_end_id, received_ns=received_ns,
            decided_ns=record.decided_at_ns,
        )

    def _derived_steps(self, record, summary: TransferSummary) -> list[tuple[int, str, str]]:
        """A transfer's states from what the core and the ledger keep, when no trail
        recorded them: the core receives, reserves and forwards in one step (the reserve
        leg's ledger timestamp), and decides at `decided_at_ns`."""
        steps: list[tuple[int, str, str]] = []
        received_ns = summary.received_ns
        if received_ns:
            steps.append((received_ns, "state", "received"))
            if record.forwarded:
                steps.append((received_ns, "state", "reserved"))
                steps.append((received_ns, "state", "forwarded"))
        if record.decided_at_ns:
            steps.append((record.decided_at_ns, "state", summary.state))
        return steps

    def _leg_timestamp(self, seq: int, leg: Leg) -> int:
        found = self.switch.ledger.lookup_transfers([(seq << 3) | int(leg)])
        return found[0].timestamp if found else 0

    def _record(self, payer_participant_id: int, transfer_id: str):
        return self.switch.core.transfer_record(payer_participant_id, transfer_id)

    def search(self, query: TransferQuery) -> TransferSearch:
        """Newest first, `query.limit` at a time: `next_before_seq` continues with older
        ones. At most SEARCH_SCAN_MAX records are examined per page (records newer than the
        cursor are skipped by their sequence number alone); a page that stops at that bound
        says so (`complete` False) and its cursor continues the scan from there."""
        if query.payer_participant_id and query.transfer_id:
            record = self._record(query.payer_participant_id, query.transfer_id)
            found = [] if record is None else [self._summary(record)]
            return TransferSearch(transfers=[s for s in found if _matches(s, query)],
                                  scanned=len(found), complete=True)
        state = TransferState[query.state.upper()] if query.state else None
        results: list[TransferSummary] = []
        scanned = 0
        complete = True
        next_before_seq = 0
        results_last_seq = 0
        before_seq = query.before_seq
        records = self.switch.core.transfer_records()
        for record in reversed(records):
            if before_seq and record.seq >= before_seq:
                continue
            if scanned >= limits.SEARCH_SCAN_MAX:
                complete = False
                next_before_seq = record.seq + 1  # continue with this one
                break
            scanned += 1
            if query.transfer_id and record.transfer_id != query.transfer_id:
                continue
            payer_id = record.payer_participant_id
            if query.payer_participant_id and payer_id != query.payer_participant_id:
                continue
            if query.participant_id and query.participant_id not in (
                    record.payer_participant_id, record.payee_participant_id):
                continue
            if state is not None and record.state != state:
                continue
            if query.end_to_end_id:
                event = record.event
                if type(event) is not TransferRequested or (
                        event.request.end_to_end_id != query.end_to_end_id):
                    continue
            summary = self._summary(record)
            if not _matches(summary, query):
                continue
            if len(results) == query.limit:
                # One more match exists past this page.
                next_before_seq = results_last_seq
                break
            results.append(summary)
            results_last_seq = record.seq
        return TransferSearch(transfers=results, scanned=scanned, complete=complete,
                              next_before_seq=next_before_seq)

    def timeline(self, payer_participant_id: int, transfer_id: str) -> TransferTimeline:
        record = self._record(payer_participant_id, transfer_id)
        if record is None:
            raise AdminRefusal(AdminResult.TRANSFER_NOT_FOUND,
                               "not retained by the switch (older transfers: the journal)")
        summary = self._summary(record)
        trail = self.switch.trail
        trail_steps = trail.steps(payer_participant_id, transfer_id) if trail is not None else []
        if not trail_steps:
            trail_steps = self._derived_steps(record, summary)
        steps: list[TimelineStep] = []
        for at_ns, kind, name in trail_steps:
            if kind == "state":
                shown_kind, text = _STATE_TEXT.get(name, ("state", name))
                if name == "rejected":
                    text = f"outcome REJECTED ({summary.result_name})"
                    if record.reason:
                        text += f": {record.reason}"
                steps.append(TimelineStep(at_ns=at_ns, kind=shown_kind, name=name, detail=text))
            else:
                steps.append(TimelineStep(at_ns=at_ns, kind=kind, name=name))
        ids = [(record.seq << 3) | int(leg) for leg in Leg]
        for transfer in self.switch.ledger.lookup_transfers(ids):
            leg = Leg(transfer.id & 0b111)
            code = TransferCode(transfer.code).name.lower() if transfer.code in {
                int(c) for c in TransferCode} else str(transfer.code)
            steps.append(TimelineStep(
                at_ns=transfer.timestamp, kind="ledger", name=_LEG_NAMES[leg],
                detail=f"{code} {format_minor(transfer.amount_minor, record.currency)}, "
                       f"ledger id {transfer.id}"))
        steps.sort(key=lambda step: step.at_ns)  # stable: the trail's order within one ns
        return TransferTimeline(transfer=summary, steps=steps)

    # -- audit ---------------------------------------------------------------------------

    async def audit_page(self, before_seq: int | None = None,
                         limit: int = limits.AUDIT_PAGE_MAX, actor: str = "",
                         action: str = "") -> list[AuditRecordView]:
        limit = max(1, min(limit, limits.AUDIT_PAGE_MAX))
        records = await self.store.audit_page(before_seq, limit, actor, action)
        return [AuditRecordView(seq=r.seq, at_ns=r.at_ns, actor=r.actor, action=r.action,
                                target=r.target, result=r.result, detail=r.detail,
                                client=r.client, record_hash=r.record_hash.hex())
                for r in records]

    async def verify_audit(self) -> AuditVerification:
        """Walk the chain; it must also reach the record anchored in the switch's journal
        with the anchored hash (a truncated or rewritten tail breaks it)."""
        anchor = self.switch.core.audit_anchor() if self.switch is not None else None
        return await verify_chain_async(self.store.iter_audit(limits.AUDIT_VERIFY_BATCH),
                                        anchor)

    async def anchor_audit(self) -> bool:
        """Write the audit head into the switch's journal (`AuditAnchored`), unless it is
        already anchored. True when anchored now. Not audited itself (that would move the
        head again); a failure is logged and the next anchor carries the head instead."""
        if self.switch is None:
            return False
        head_seq, head_hash = await self.store.audit_head()
        anchored = self.switch.core.audit_anchor()
        if head_seq == 0 or (anchored is not None and anchored[0] >= head_seq):
            # Nothing new (or the table lost records: verification says so, never hide it).
            return False
        event = AuditAnchored(request_id=f"audit-anchor-{head_seq}", audit_seq=head_seq,
                              audit_hash=head_hash.hex())
        try:
            answer = await asyncio.wait_for(self.switch.submit(event), self.submit_timeout_s)
        except (SwitchUnavailable, asyncio.TimeoutError) as error:
            log.warning("event=audit_anchor_failed audit_seq=%d why=%r", head_seq, error)
            return False
        if answer.result != Result.OK:
            log.warning("event=audit_anchor_refused audit_seq=%d result=%s", head_seq,
                        _RESULT_NAMES.get(int(answer.result), int(answer.result)))
            return False
        return True

    # -- panels --------------------------------------------------------------------------

    def sample(self) -> None:
        """Take one sample of the switch's counters (the app calls this once a second)."""
        self.live.sample(self.clock_ns(), self.switch.counters())

    def overview(self) -> Overview:
        core = self.switch.core
        return Overview(
            at_ns=self.clock_ns(),
            transfers_per_s=round(self.live.transfers_per_s(), 1),
            success_rate=round(self.live.success_rate(), 4),
            latency_p50_ms=round(self.live.latency_ms(0.5), 2),
            latency_p99_ms=round(self.live.latency_ms(0.99), 2),
            outcomes=self.live.outcomes(),
            transfers_total=self.live.transfers_total(),
            in_flight=core.in_flight_count,
            alerts=self.alerts(),
            replication=self._replication(),
        )

    def _replication(self) -> Replication | None:
        read = getattr(self.switch, "replication", None)  # a port without roles: None
        return None if read is None else msgspec.convert(read(), Replication)

    def alerts(self) -> list[Alert]:
        alerts: list[Alert] = []
        core = self.switch.core
        for participant_id in sorted(core.participant_ids()):
            view = core.participant(participant_id)
            if view.status != ParticipantStatus.ACTIVE:
                alerts.append(Alert(kind="suspended", severity="warning",
                                    text=f"{view.name} ({participant_id}) is suspended"))
            for position in self.positions(participant_id):
                if position.limit_minor <= 0:
                    continue
                used = position.used_minor / position.limit_minor
                if used >= limits.ALERT_CAP_USED_FRACTION:
                    alerts.append(Alert(
                        kind="near_limit", severity="critical" if used >= 0.95 else "warning",
                        text=f"{view.name} ({participant_id}) has used {used:.0%} of its "
                             f"{position.currency} liquidity"))
        counters = self.switch.counters()
        callback_failures = int(counters.get("callback_failures_total", 0))
        if callback_failures:
            alerts.append(Alert(kind="callback_failures", severity="warning",
                                text=f"{callback_failures} callback deliveries failed"))
        lag_s = float(counters.get("journal_lag_seconds", 0.0))
        if lag_s >= limits.JOURNAL_LAG_ALERT_S:
            alerts.append(Alert(kind="journal_lag", severity="critical",
                                text=f"journal commit lag {lag_s:.1f} s"))
        return alerts

    async def directory_panel(self) -> DirectoryPanel:
        by_type, by_participant, open_claims = await self.switch.directory_counts()
        counters = self.switch.counters()
        total = int(counters.get("resolve_total", 0))
        found = int(counters.get("resolve_found_total", 0))
        return DirectoryPanel(
            aliases_by_type=by_type, aliases_by_participant=by_participant,
            resolve_total=total, resolve_found=found,
            resolve_rate=round(found / total, 4) if total else 0.0,
            rate_limited_total=int(counters.get("resolve_rate_limited_total", 0)),
            open_claims=open_claims,
        )

    def health(self) -> Health:
        checks = dict(self.switch.health())
        status = "ok" if all(value == "ok" or value.startswith(("ok:", "none"))
                             for value in checks.values()) else "degraded"
        return Health(status=status, checks=checks)


# -- helpers -------------------------------------------------------------------------------


def _matches(summary: TransferSummary, query: TransferQuery) -> bool:
    at_ns = summary.received_ns or summary.decided_ns
    if query.from_ns and at_ns < query.from_ns:
        return False
    if query.to_ns and at_ns > query.to_ns:
        return False
    return True


def _user_view(user: User) -> UserView:
    return UserView(username=user.username, role=user.role.name.lower(),
                    created_ns=user.created_ns, disabled=user.disabled)


def _proposal_target(body: ProposalBody) -> str:
    if isinstance(body, (SettlementConfirmProposal, SettlementAbortProposal)):
        return f"window:{body.window_id}"
    if isinstance(body, (SettlementCloseProposal, SettlementScheduleProposal)):
        return f"currency:{body.currency}"
    if isinstance(body, CurrencyProposal):
        return f"currency:{body.currency}"
    return f"participant:{proposal_participant_id(body)}"


def _proposal_view(proposal: Proposal) -> ProposalView:
    body = proposal.body
    return ProposalView(
        proposal_id=proposal.proposal_id, kind=proposal_kind(body),
        participant_id=proposal_participant_id(body), currency=proposal_currency(body),
        body=body,
        state=proposal.state.name.lower(), proposed_by=proposal.proposed_by,
        proposed_ns=proposal.proposed_ns, decided_by=proposal.decided_by,
        decided_ns=proposal.decided_ns, core_result=proposal.core_result,
        detail=proposal.detail,
    )


def _settings(body: MobileMoneyWalletProposal | FspiopParticipantProposal) -> dict:
    """A hub's settings for a participant, from its proposal (everything but the kind and
    the note)."""
    settings = msgspec.to_builtins(body)
    settings.pop("kind", None)
    settings.pop("note", None)
    return settings


def _proposal_event(proposal: Proposal):
    """The one switch event a proposal is, or None when it changes something else (or
    more than one thing: onboarding)."""
    body = proposal.body
    request_id = proposal.proposal_id
    if isinstance(body, CurrencyProposal):
        return CurrencyAdded(request_id=request_id, currency=body.currency,
                             ledger_id=body.ledger_id,
                             settlement_model=SettlementModel[body.settlement_model.upper()],
                             rules=body.rules)
    if isinstance(body, AccountProposal):
        return ParticipantAccountOpened(request_id=request_id,
                                        participant_id=body.participant_id,
                                        currency=body.currency)
    if isinstance(body, FundProposal):
        return FundsDeposited(request_id=request_id, participant_id=body.participant_id,
                              currency=body.currency, amount_minor=body.amount_minor)
    if isinstance(body, DefundProposal):
        return FundsWithdrawn(request_id=request_id, participant_id=body.participant_id,
                              currency=body.currency, amount_minor=body.amount_minor)
    if isinstance(body, NetDebitCapProposal):
        return NetDebitCapSet(request_id=request_id, participant_id=body.participant_id,
                              currency=body.currency, cap_minor=body.cap_minor)
    if isinstance(body, SettlementCloseProposal):
        return SettlementWindowClosed(request_id=request_id, currency=body.currency,
                                      window_id=body.window_id)
    if isinstance(body, SettlementConfirmProposal):
        return SettlementConfirmed(request_id=request_id, window_id=body.window_id,
                                   rtgs_reference=body.rtgs_reference)
    if isinstance(body, SettlementAbortProposal):
        return SettlementAborted(request_id=request_id, window_id=body.window_id,
                                 reason=body.note)
    if isinstance(body, SettlementScheduleProposal):
        return SettlementScheduleSet(request_id=request_id, currency=body.currency,
                                     interval_s=body.interval_s,
                                     cutoffs_s=tuple(body.cutoffs_s),
                                     utc_offset_s=body.utc_offset_s)
    if not isinstance(body, DailyLimitProposal):
        return None
    return ParticipantDailyLimitSet(request_id=request_id, participant_id=body.participant_id,
                                    currency=body.currency,
                                    daily_total_max_minor=body.daily_total_max_minor)
