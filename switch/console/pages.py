"""The console's pages: server-rendered Jinja2 templates, htmx for partial updates, and one
Server-Sent Events stream (`/events`) that feeds the overview's live numbers and chart.

Every page works without JavaScript (plain links and forms, Post/Redirect/Get); htmx and
`static/console.js` only make it livelier. Forms carry the session's CSRF token in a hidden
field and htmx sends it as a header. Handlers decode forms into the same typed Structs as
the JSON API and call the same `AdminService` methods, so roles, maker-checker and audit
are identical on both surfaces. No handler here may change anything itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.datastructures import Cookie
from litestar.response import File, Redirect, ServerSentEvent, Template
from litestar.response.sse import ServerSentEventMessage

from switch.admin import limits
from switch.admin.app import WebUi, create_app, transfer_query
from switch.admin.money import exponent, format_minor, parse_major
from switch.admin.types import (
    PROPOSAL_ROLES,
    AccountProposal,
    AdminRefusal,
    AdminResult,
    CallbackUrlProposal,
    CategoryProposal,
    CertificateProposal,
    CurrencyProposal,
    DailyLimitProposal,
    Decision,
    DefundProposal,
    FundProposal,
    G2PBatchProposal,
    KeyRotationProposal,
    NetDebitCapProposal,
    OnboardProposal,
    ProposalState,
    Role,
    TransferQuery,
    UserCreate,
)
from switch.admin.web import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    caller_of,
    client_address,
    cleared_session_cookie,
    convert_form,
    form_of,
    secure_cookies,
    service_of,
    session_cookie,
    session_of,
)

PUBLIC = {"public": True}
CONSOLE_STATIC = Path(__file__).resolve().parent / "static"
SERIES_POINTS_MAX = 300
NS_PER_S = limits.NS_PER_S

# Notices after a successful action (Post/Redirect/Get): a fixed vocabulary, so nothing a
# client sends is ever reflected into a page.
NOTICES = {
    "suspended": "Participant suspended: its new transfers are refused.",
    "resumed": "Participant resumed.",
    "proposed": "Proposal recorded: it now waits for a different operator to check it "
                "(Approvals).",
    "approved": "Proposal approved and sent to the switch.",
    "failed": "Proposal approved, but the switch refused it (see its result).",
    "rejected": "Proposal rejected.",
    "user": "Operator created.",
    "user-disabled": "Operator disabled; their sessions ended.",
    "logged-out": "You are logged out.",
}

_PROPOSAL_TYPES = {
    "fund": FundProposal,
    "defund": DefundProposal,
    "net_debit_cap": NetDebitCapProposal,
    "daily_limit": DailyLimitProposal,
}


# -- template helpers --------------------------------------------------------------------


def format_utc(value_ns: int) -> str:
    """The console's one way to show a moment: "2023-11-14 22:13:20.123 UTC" (static/
    console.js writes live times the same way)."""
    if not value_ns:
        return "—"
    moment = datetime.fromtimestamp(value_ns // NS_PER_S, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{value_ns // 1_000_000 % 1000:03d} UTC"


_UTC_INPUT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$", re.ASCII)


def parse_utc(text: str) -> int:
    """A `datetime-local` input's value, read as UTC ("2023-11-14T22:13[:20[.5]]"), as ns
    since the epoch. ValueError for anything else."""
    if not _UTC_INPUT.match(text):
        raise ValueError(f"not a UTC date and time: {text[:40]!r}")
    whole, _, fraction = text.partition(".")
    moment = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * NS_PER_S + int(fraction.ljust(9, "0") or 0)


def _ts(value_ns: int) -> str:
    return format_utc(value_ns)


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _money(amount_minor: int, currency: str) -> str:
    return format_minor(int(amount_minor), currency)


def _iso(value_ns: int) -> str:
    """For `<time datetime=...>` (machine-readable); what people read is `format_utc`."""
    moment = datetime.fromtimestamp(value_ns // NS_PER_S, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value_ns // 1_000_000 % 1000:03d}Z"


def _pem_fingerprint(pem: str) -> str:
    """A public key as a checker compares it with the participant's letter: SHA-256 of its
    DER (`openssl pkey -pubin -outform DER | sha256sum`), the first 16 hex digits."""
    body = "".join(line.strip() for line in pem.strip().splitlines()
                   if line.strip() and not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except ValueError:
        return "not PEM"
    return hashlib.sha256(der).hexdigest()[:16] + "…"


def template_callback(engine) -> None:
    env = engine.engine
    env.filters["money"] = _money
    env.filters["pem_fingerprint"] = _pem_fingerprint
    env.filters["ts"] = _ts
    env.filters["iso"] = _iso
    env.filters["pct"] = _pct
    env.globals["exponent"] = exponent
    env.globals["notices"] = NOTICES
    env.globals["Role"] = Role
    env.globals["PROPOSAL_ROLES"] = PROPOSAL_ROLES


def page(request: Request, name: str, nav: str, **context: Any) -> Template:
    """A page with what every template needs: the session and what its role may do (forms
    a role cannot use are not shown), and participants' names (pages name participants,
    with their number beside)."""
    session = request.state.get("session")
    notice = request.query_params.get("notice", "")
    role = session.role if session is not None else None
    names = service_of(request).names() if session is not None else {}
    return Template(name, context={
        "session": session, "nav": nav, "notice": NOTICES.get(notice, ""),
        "is_operator": role is not None and role >= Role.OPERATOR,
        "is_admin": role is not None and role >= Role.ADMIN, "names": names, **context,
    })


def back(path: str, notice: str) -> Redirect:
    return Redirect(path=path, query_params={"notice": notice}, status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or protocol-relative URL."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


# -- favicon -----------------------------------------------------------------------------

FAVICON = (CONSOLE_STATIC / "favicon.svg").read_bytes()


@get("/favicon.ico", opt=PUBLIC, include_in_schema=False, media_type="image/svg+xml")
async def favicon() -> Response:
    """Where browsers look first; the pages also link it (`<link rel="icon">`)."""
    return Response(FAVICON, media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})


# -- login -------------------------------------------------------------------------------


@get("/login", opt=PUBLIC, include_in_schema=False)
async def login_page(request: Request) -> Template:
    # Login CSRF: a double-submit token (cookie + hidden field), since there is no session yet.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = Template("login.html", context={
        "session": None, "nav": "login", "login_csrf": token, "next_path": _safe_next(
            request.query_params.get("next")), "error": None,
        "notice": NOTICES.get(request.query_params.get("notice", ""), "")})
    response.cookies.append(Cookie(key=LOGIN_CSRF_COOKIE, value=token, path="/login",
                                   httponly=True, samesite="strict",
                                   secure=secure_cookies(request)))
    return response


@post("/login", opt=PUBLIC, include_in_schema=False)
async def login_submit(request: Request) -> Response:
    form = await form_of(request)
    cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    next_path = _safe_next(form.get("next"))
    if not cookie_token or not secrets.compare_digest(cookie_token.encode(),
                                                      form.get(CSRF_FIELD, "").encode()):
        refusal = AdminRefusal(AdminResult.CSRF_TOKEN_INVALID, "reload the login page")
        return _login_again(request, refusal, cookie_token, next_path)
    username = form.get("username", "")[: limits.USERNAME_LENGTH_MAX]
    password = form.get("password", "")[: limits.PASSWORD_LENGTH_MAX]
    try:
        token, _session = await service_of(request).login(username, password,
                                                          client_address(request))
    except AdminRefusal as refusal:
        return _login_again(request, refusal, cookie_token, next_path)
    return Redirect(path=next_path, status_code=303, cookies=[
        session_cookie(request, token, limits.SESSION_LIFETIME_S)])


def _login_again(request: Request, refusal: AdminRefusal, token: str, next_path: str) -> Template:
    token = token or secrets.token_urlsafe(24)
    headers = {"Retry-After": str(refusal.retry_after_s)} if refusal.retry_after_s else {}
    response = Template("login.html", status_code=refusal.http_status, headers=headers, context={
        "session": None, "nav": "login", "login_csrf": token, "next_path": next_path,
        "error": refusal.body(), "notice": ""})
    response.cookies.append(Cookie(key=LOGIN_CSRF_COOKIE, value=token, path="/login",
                                   httponly=True, samesite="strict",
                                   secure=secure_cookies(request)))
    return response


@post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    await service_of(request).logout(session_of(request), client_address(request))
    return Redirect(path="/login", query_params={"notice": "logged-out"}, status_code=303,
                    cookies=[cleared_session_cookie(request)])


# -- overview and live events ------------------------------------------------------------------


@get("/", include_in_schema=False)
async def overview_page(request: Request) -> Template:
    service = service_of(request)
    return page(request, "overview.html", "overview", overview=service.overview())


def _overview_message(service, with_series: bool) -> ServerSentEventMessage:
    overview = service.overview()
    payload = msgspec.to_builtins(overview)
    series = service.live.series(SERIES_POINTS_MAX if with_series else 1)
    payload["series"] = [[round(t, 3), round(v, 1)] for t, v in series]
    payload["series_full"] = with_series
    return ServerSentEventMessage(data=msgspec.json.encode(payload).decode(), event="overview")


@get("/events", include_in_schema=False)
async def events(request: Request) -> Response:
    """Server-Sent Events: an `overview` event every second while the session lives."""
    state = request.app.state
    if state.sse_clients >= limits.SSE_CLIENTS_MAX:
        raise AdminRefusal(AdminResult.SWITCH_UNAVAILABLE, "too many live views open")
    service = service_of(request)
    token_hash = session_of(request).token_hash

    async def stream():
        state.sse_clients += 1
        try:
            yield _overview_message(service, with_series=True)
            while True:
                await asyncio.sleep(limits.LIVE_SAMPLE_INTERVAL_S)
                # The stream ends with the session (logout, expiry, disabled operator).
                if await service.store.get_session(token_hash) is None:
                    return
                yield _overview_message(service, with_series=False)
        finally:
            state.sse_clients -= 1

    return ServerSentEvent(stream(), headers={"Cache-Control": "no-store",
                                              "X-Accel-Buffering": "no"})


# -- participants --------------------------------------------------------------------------


@get("/participants", include_in_schema=False)
async def participants_page(request: Request) -> Template:
    service = service_of(request)
    currencies = service.switch.core.currencies()
    return page(request, "participants.html", "participants",
                participants=service.participants(), currencies=currencies,
                categories=service.categories())


@get("/participants/positions", include_in_schema=False)
async def participants_positions(request: Request) -> Template:
    """The positions table alone: htmx polls it every few seconds."""
    return Template("_positions.html", context={
        "participants": service_of(request).participants()})


@get("/participants/{participant_id:int}", include_in_schema=False)
async def participant_page(request: Request,
                           participant_id: FromPath[int]) -> Template:
    service = service_of(request)
    return page(request, "participant.html", "participants",
                participant=service.participant(participant_id),
                categories=service.categories(), currencies=service.switch.core.currencies())


@post("/participants", include_in_schema=False)
async def participant_onboard(request: Request) -> Response:
    """Admin: propose an onboarding; a second admin approves it (and sees the first key)."""
    form = await form_of(request)
    currencies = [c.strip().upper() for c in form.get("currencies", "").split(",") if c.strip()]
    fields = {key: form[key] for key in ("participant_id", "name", "participant_kind",
                                         "callback_url", "category", "note") if form.get(key)}
    for key, field in (("funding", "funding_minor"), ("net_debit_cap", "net_debit_cap_minor")):
        if form.get(key, "").strip():
            fields[field] = _minor_units(form[key], currencies, key)
    body = convert_form({**fields, "currencies": currencies}, OnboardProposal)
    await service_of(request).propose(caller_of(request), body)
    return back("/approvals", "proposed")


@post("/participants/{participant_id:int}/suspend", include_in_schema=False)
async def participant_suspend(request: Request,
                              participant_id: FromPath[int]) -> Response:
    await service_of(request).set_status(caller_of(request), participant_id, True)
    return back(f"/participants/{participant_id}", "suspended")


@post("/participants/{participant_id:int}/resume", include_in_schema=False)
async def participant_resume(request: Request,
                             participant_id: FromPath[int]) -> Response:
    await service_of(request).set_status(caller_of(request), participant_id, False)
    return back(f"/participants/{participant_id}", "resumed")


def _minor_units(text: str, currencies: list[str], field: str) -> int:
    """An amount typed in the currencies' units, as minor units; the currencies must share
    their number of decimals (else the amount would mean different things in each)."""
    if len({exponent(currency) for currency in currencies}) != 1:
        raise AdminRefusal(AdminResult.VALIDATION_ERROR,
                           f"{field}: give currencies with the same minor unit (or use the "
                           "API, in minor units)")
    try:
        return parse_major(text, currencies[0])
    except ValueError as error:
        raise AdminRefusal(AdminResult.VALIDATION_ERROR, f"{field}: {error}") from None


async def _propose_for(request: Request, participant_id: int, struct_type,
                       **fields) -> Response:
    form = await form_of(request)
    body = convert_form({"participant_id": participant_id, "note": form.get("note", ""),
                         **{key: form.get(key, "") for key in fields}}, struct_type)
    await service_of(request).propose(caller_of(request), body)
    return back(f"/participants/{participant_id}", "proposed")


@post("/participants/{participant_id:int}/callback-url", include_in_schema=False)
async def participant_callback(request: Request, participant_id: FromPath[int]) -> Response:
    return await _propose_for(request, participant_id, CallbackUrlProposal, callback_url=True)


@post("/participants/{participant_id:int}/category", include_in_schema=False)
async def participant_category(request: Request, participant_id: FromPath[int]) -> Response:
    return await _propose_for(request, participant_id, CategoryProposal, category=True)


@post("/participants/{participant_id:int}/certificate", include_in_schema=False)
async def participant_certificate(request: Request, participant_id: FromPath[int]) -> Response:
    return await _propose_for(request, participant_id, CertificateProposal,
                              fingerprint_sha256=True)


@post("/participants/{participant_id:int}/account", include_in_schema=False)
async def participant_account(request: Request, participant_id: FromPath[int]) -> Response:
    return await _propose_for(request, participant_id, AccountProposal, currency=True)


@post("/participants/{participant_id:int}/rotate-key", include_in_schema=False)
async def participant_rotate(request: Request, participant_id: FromPath[int]) -> Response:
    """Admin: propose a key rotation; the new key is shown to the admin who approves it."""
    form = await form_of(request)
    body = convert_form({"participant_id": participant_id, "note": form.get("note", ""),
                         "revoke_others": form.get("revoke_others", "true") != "false"},
                        KeyRotationProposal)
    await service_of(request).propose(caller_of(request), body)
    return back(f"/participants/{participant_id}", "proposed")


# -- maker-checker -------------------------------------------------------------------------


async def _approvals(request: Request, issued=None) -> Template:
    service = service_of(request)
    pending = await service.proposals(ProposalState.PENDING)
    recent = [p for p in await service.proposals(None, 50) if p.state != "pending"]
    core = service.switch.core
    return page(request, "approvals.html", "approvals", pending=pending, recent=recent,
                participants=service.participants(), currencies=core.currencies(),
                settlement={c: core.currency(c).settlement_model.name.lower()
                            for c in core.currencies()}, issued=issued)


@get("/approvals", include_in_schema=False)
async def approvals_page(request: Request) -> Template:
    return await _approvals(request)


@post("/approvals", include_in_schema=False)
async def approvals_propose(request: Request) -> Response:
    form = await form_of(request)
    struct_type = _PROPOSAL_TYPES.get(form.get("kind", ""))
    if struct_type is None:
        raise AdminRefusal(AdminResult.VALIDATION_ERROR, "kind must be one of "
                           + ", ".join(_PROPOSAL_TYPES))
    currency = form.get("currency", "")
    fields = {"participant_id": form.get("participant_id", ""), "currency": currency,
              "note": form.get("note", "")}
    # Typed in the currency's units ("1,234.56"), proposed in exact minor units.
    text = form.get("amount", "").strip()
    value = _minor_units(text, [currency], "amount") if text else None
    if struct_type in (FundProposal, DefundProposal):
        fields["amount_minor"] = value
    elif struct_type is NetDebitCapProposal:
        fields["cap_minor"] = value
    else:
        fields["daily_total_max_minor"] = value  # empty: back to the scheme's rule
    body = convert_form(fields, struct_type)
    await service_of(request).propose(caller_of(request), body)
    return back("/approvals", "proposed")


@post("/approvals/currency", include_in_schema=False)
async def approvals_currency(request: Request) -> Response:
    """Admin: propose carrying a new currency (the scheme's default rules)."""
    form = await form_of(request)
    body = convert_form({key: form.get(key, "") for key in (
        "currency", "ledger_id", "settlement_model", "note")}, CurrencyProposal)
    await service_of(request).propose(caller_of(request), body)
    return back("/approvals", "proposed")


@post("/approvals/{proposal_id:str}/decide", include_in_schema=False)
async def approvals_decide(request: Request, proposal_id: FromPath[str]) -> Response:
    form = await form_of(request)
    decision = convert_form({"approve": form.get("decision") == "approve",
                             "note": form.get("note", "")}, Decision)
    view = await service_of(request).decide(caller_of(request), proposal_id, decision)
    if view.api_key:
        # Shown once, on this answer only (never redirect: it would be lost).
        return await _approvals(request, issued=view)
    notice = {"executed": "approved", "failed": "failed"}.get(view.state, "rejected")
    return back("/approvals", notice)


# -- transfers -----------------------------------------------------------------------------


# The page's form takes dates and times (UTC) where the API takes nanoseconds.
_TIME_FIELDS = {"received_from": "from_ns", "received_until": "to_ns"}


def _transfer_query(params: dict[str, str]) -> TransferQuery:

    fields = {k: v for k, v in params.items()
              if k not in ("notice", "from_ns", "to_ns") and k not in _TIME_FIELDS}
    for name, field in _TIME_FIELDS.items():
        if params.get(name):
            try:
                fields[field] = parse_utc(params[name])
            except ValueError as error:
                raise AdminRefusal(AdminResult.VALIDATION_ERROR, f"{name}: {error}") from None
    return transfer_query(fields)


@get("/transfers", include_in_schema=False)
async def transfers_page(request: Request) -> Template:
    params = {k: v for k, v in request.query_params.items() if v != "" and k != "notice"}
    results = None
    query = TransferQuery()
    if params:
        query = _transfer_query(params)
        results = service_of(request).search(query)
    form = {name: params.get(name, "") for name in _TIME_FIELDS}
    # The same search, one page older (the cursor replaces any earlier one).
    older = ""
    if results is not None and results.next_before_seq:
        older = "/transfers?" + urlencode({**{k: v for k, v in params.items()
                                              if k != "before_seq"},
                                           "before_seq": results.next_before_seq})
    newest = ("/transfers?" + urlencode({k: v for k, v in params.items() if k != "before_seq"})
              if query.before_seq else "")
    name = "_transfer_results.html" if request.headers.get("hx-request") == "true" else (
        "transfers.html")
    return page(request, name, "transfers", query=query, results=results, form=form,
                older=older, newest=newest)


@get("/transfers/{payer_participant_id:int}/{transfer_id:str}", include_in_schema=False)
async def timeline_page(request: Request, payer_participant_id: FromPath[int],
                        transfer_id: FromPath[str]) -> Template:
    timeline = service_of(request).timeline(payer_participant_id, transfer_id)
    return page(request, "timeline.html", "transfers", timeline=timeline)


# -- directory, audit, operators --------------------------------------------------------------


@get("/directory", include_in_schema=False)
async def directory_page(request: Request) -> Template:
    return page(request, "directory.html", "directory",
                panel=await service_of(request).directory_panel())


@get("/programmes", include_in_schema=False)
async def programmes_page(request: Request) -> Template:
    """G2P batches: progress, rates, failures by reason, reports; pause, resume and cancel
    are proposals (maker-checker)."""
    service = service_of(request)
    return page(request, "programmes.html", "programmes",
                batches=await service.switch.g2p_batches())


@get("/programmes/batches", include_in_schema=False)
async def programmes_batches(request: Request) -> Template:
    """The batches table alone: htmx polls it every few seconds."""
    service = service_of(request)
    return Template("_batches.html", context={
        "batches": await service.switch.g2p_batches(), "names": service.names(),
        "session": request.state.get("session"),
        "is_operator": request.state.get("session").role >= Role.OPERATOR})


_REPORT_KINDS = {"csv": ("csv", "text/csv"), "json": ("json", "application/json"),
                 "summary": ("summary", "application/json")}


@get("/programmes/{batch_id:int}/report/{kind:str}", include_in_schema=False)
async def programmes_report(request: Request, batch_id: FromPath[int],
                            kind: FromPath[str]) -> Response:
    """A batch's report, written to a file page by page and sent from the file."""
    chosen = _REPORT_KINDS.get(kind)
    if chosen is None:
        raise AdminRefusal(AdminResult.VALIDATION_ERROR, "report kind: csv, json or summary")
    written = await service_of(request).switch.g2p_report(batch_id)
    if written is None:
        raise AdminRefusal(AdminResult.VALIDATION_ERROR, "no such batch")
    path = written["files"][chosen[0]]
    suffix = "summary.json" if kind == "summary" else kind
    return File(path=path, filename=f"g2p-{written['transaction_id']}.{suffix}",
                media_type=chosen[1])


@post("/programmes/action", include_in_schema=False)
async def programmes_action(request: Request) -> Response:
    form = await form_of(request)
    body = convert_form({key: form.get(key, "") for key in
                         ("participant_id", "transaction_id", "action", "note")},
                        G2PBatchProposal)
    await service_of(request).propose(caller_of(request), body)
    return back("/approvals", "proposed")


@get("/audit", include_in_schema=False)
async def audit_page(request: Request, before_seq: FromQuery[int] = 0,
                     actor: FromQuery[str] = "", action: FromQuery[str] = "") -> Template:
    service = service_of(request)
    records = await service.audit_page(before_seq or None, 100, actor[:64], action[:64])
    return page(request, "audit.html", "audit", records=records, actor=actor, action=action,
                verification=None)


@get("/audit/verify", include_in_schema=False)
async def audit_verify_page(request: Request) -> Template:
    service = service_of(request)
    records = await service.audit_page(None, 100)
    return page(request, "audit.html", "audit", records=records, actor="", action="",
                verification=await service.verify_audit())


@get("/users", include_in_schema=False)
async def users_page(request: Request) -> Template:
    return page(request, "users.html", "users", users=await service_of(request).users())


@post("/users", include_in_schema=False)
async def users_create(request: Request) -> Response:
    body = convert_form(await form_of(request), UserCreate)
    await service_of(request).create_user(caller_of(request), body)
    return back("/users", "user")


@post("/users/{username:str}/disable", include_in_schema=False)
async def users_disable(request: Request, username: FromPath[str]) -> Response:
    await service_of(request).set_user_disabled(caller_of(request), username, True)
    return back("/users", "user-disabled")


CONSOLE_HANDLERS = [
    favicon, login_page, login_submit, logout, overview_page, events, participants_page,
    participants_positions, participant_page, participant_onboard, participant_suspend,
    participant_resume, participant_callback, participant_category, participant_certificate,
    participant_account, participant_rotate, approvals_page, approvals_propose,
    approvals_currency, approvals_decide, transfers_page, timeline_page, directory_page,
    audit_page, audit_verify_page, users_page, users_create, users_disable,
    programmes_page, programmes_batches, programmes_report, programmes_action,
]

CONSOLE_DIR = Path(__file__).resolve().parent
CONSOLE_UI = WebUi(handlers=CONSOLE_HANDLERS, templates_dir=CONSOLE_DIR / "templates",
                   static_dir=CONSOLE_DIR / "static", template_callback=template_callback)


def create_console_app(service, **options):
    """The operator console: the admin JSON API (switch/admin/app.py) and these pages, in
    one Litestar app; `options` as for `create_app`."""
    return create_app(service, ui=CONSOLE_UI, **options)
