"""The admin HTTP application: the JSON API under /api/admin (OpenAPI at
/api/admin/schema/openapi.json), the console pages, `/metrics`, `/health` and the live
event stream, as one Litestar app.

`create_app(service)` builds it; `serve(app, host, port)` runs it under uvicorn in the
caller's event loop (the switch's own), so the console reads the core between two steps and
submits operator events through the same sequencer as everything else. Handlers are thin:
they decode a typed body, call `AdminService`, and encode its answer; the service does the
role checks, maker-checker and audit. Nothing here may change the switch or the store
directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Annotated, Any, Callable, NamedTuple

import msgspec
from litestar import Litestar, Request, Response, Router, delete, get, post
from litestar.response import Stream
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from switch.admin import limits
from switch.admin.examples import (
    RESPONSES,
    RtgsAnswerOperation,
    DecisionBody,
    LoginBody,
    ProposalRequest,
    UserBody,
)
from switch.admin.service import AdminService
from switch.admin.types import (
    AdminError,
    AdminRefusal,
    AdminResult,
    AuditRecordView,
    AuditVerification,
    Categories,
    DirectoryPanel,
    Health,
    Overview,
    ParticipantView,
    ProposalState,
    ProposalView,
    RtgsAnswerView,
    SessionView,
    TransferQuery,
    TransferSearch,
    TransferTimeline,
    UserView,
    WindowDetail,
    WindowSummary,
)
from switch.admin.web import (
    OPENAPI_PATH,
    add_security_headers,
    authenticate,
    caller_of,
    cleared_session_cookie,
    client_address,
    http_error_handler,
    refusal_handler,
    service_of,
    session_cookie,
    session_of,
    validation_handler,
)

log = logging.getLogger("ponte.admin")
PUBLIC = {"public": True}
TRANSFER_STATES = r"^(|received|reserved|forwarded|committed|rejected|expired)$"
SESSIONS_SWEEP_S = 60


def _session_view(session) -> SessionView:
    return SessionView(username=session.username, role=session.role.name.lower(),
                       csrf_token=session.csrf_token, expires_at_ns=session.expires_ns)


# -- sessions ------------------------------------------------------------------------------


@post("/session", opt=PUBLIC, status_code=200, tags=["session"], responses=RESPONSES["api_login"])
async def api_login(request: Request, data: LoginBody) -> Response[SessionView]:
    """Log in. Sets the HttpOnly session cookie; the answer carries the CSRF token that
    every state-changing request must send as `X-CSRF-Token`. JSON only (a cross-site form
    cannot send it). Refused with LOGIN_FAILED or LOGIN_RATE_LIMITED (429, Retry-After)."""
    service = service_of(request)
    token, session = await service.login(data.username, data.password, client_address(request))
    return Response(_session_view(session), cookies=[
        session_cookie(request, token, limits.SESSION_LIFETIME_S)])


@get("/session", tags=["session"], responses=RESPONSES["api_session"])
async def api_session(request: Request) -> SessionView:
    """Who is logged in, with the session's CSRF token."""
    return _session_view(session_of(request))


@delete("/session", status_code=200, tags=["session"], responses=RESPONSES["api_logout"])
async def api_logout(request: Request) -> Response[dict]:
    await service_of(request).logout(session_of(request), client_address(request))
    return Response({"result": "OK"}, cookies=[cleared_session_cookie(request)])


# -- operators -----------------------------------------------------------------------------


@get("/users", tags=["operators"], responses=RESPONSES["api_users"])
async def api_users(request: Request) -> list[UserView]:
    return await service_of(request).users()


@post("/users", tags=["operators"], responses=RESPONSES["api_create_user"])
async def api_create_user(request: Request, data: UserBody) -> UserView:
    """Admin only. The password is hashed with argon2id; it is never stored or logged."""
    return await service_of(request).create_user(caller_of(request), data)


@post("/users/{username:str}/disable", status_code=200, tags=["operators"], responses=RESPONSES["api_disable_user"])
async def api_disable_user(request: Request, username: FromPath[str]) -> UserView:
    """Admin only. Ends the user's sessions."""
    return await service_of(request).set_user_disabled(caller_of(request), username, True)


@post("/users/{username:str}/enable", status_code=200, tags=["operators"], responses=RESPONSES["api_enable_user"])
async def api_enable_user(request: Request, username: FromPath[str]) -> UserView:
    return await service_of(request).set_user_disabled(caller_of(request), username, False)


# -- participants --------------------------------------------------------------------------


@get("/participants", tags=["participants"], responses=RESPONSES["api_participants"])
async def api_participants(request: Request) -> list[ParticipantView]:
    """Every participant with its status and, per currency, position against its limit."""
    return service_of(request).participants()


@get("/participants/{participant_id:int}", tags=["participants"], responses=RESPONSES["api_participant"])
async def api_participant(request: Request,
                          participant_id: FromPath[int]) -> ParticipantView:
    return service_of(request).participant(participant_id)


@post("/participants/{participant_id:int}/suspend", status_code=200, tags=["participants"], responses=RESPONSES["api_suspend"])
async def api_suspend(request: Request, participant_id: FromPath[int]) -> ParticipantView:
    """Operator: it can neither send nor receive; in-flight transfers finish."""
    return await service_of(request).set_status(caller_of(request), participant_id, True)


@post("/participants/{participant_id:int}/resume", status_code=200, tags=["participants"], responses=RESPONSES["api_resume"])
async def api_resume(request: Request, participant_id: FromPath[int]) -> ParticipantView:
    return await service_of(request).set_status(caller_of(request), participant_id, False)


@get("/categories", tags=["participants"], responses=RESPONSES["api_categories"])
async def api_categories(request: Request) -> Categories:
    """The directory's bucket categories (anti-enumeration budgets) a participant can be
    put in with a `category` proposal, and the default."""
    return service_of(request).categories()


# -- maker-checker -------------------------------------------------------------------------


@get("/proposals", tags=["maker-checker"], responses=RESPONSES["api_proposals"])
async def api_proposals(
    request: Request,
    proposal_state: Annotated[str, QueryParameter(
        name="state", pattern=r"^(|pending|approved|executed|failed|rejected|expired)$(?!\n)")] = "",
) -> list[ProposalView]:
    chosen = ProposalState[proposal_state.upper()] if proposal_state else None
    return await service_of(request).proposals(chosen)


@post("/proposals", tags=["maker-checker"], responses=RESPONSES["api_propose"])
async def api_propose(request: Request, data: ProposalRequest) -> ProposalView:
    """Propose a change; it is carried out only when a *different* operator with the role
    it needs approves it. `kind` selects the body: `fund`, `defund`, `net_debit_cap`,
    `daily_limit`, `callback_url`, `category` (operator), `currency`, `onboard`,
    `account`, `rotate_key`, `certificate`, `mobilemoney_wallet`, `fspiop_participant`
    (admin)."""
    return await service_of(request).propose(caller_of(request), data)


@get("/proposals/{proposal_id:str}", tags=["maker-checker"], responses=RESPONSES["api_proposal"])
async def api_proposal(request: Request, proposal_id: FromPath[str]) -> ProposalView:
    return await service_of(request).proposal(proposal_id)


@post("/proposals/{proposal_id:str}/decision", status_code=200, tags=["maker-checker"], responses=RESPONSES["api_decide"])
async def api_decide(request: Request, proposal_id: FromPath[str],
                     data: DecisionBody) -> ProposalView:
    """Not the proposer, with the role the change needs: approve (it is carried out now)
    or reject. Approving an `onboard` or `rotate_key` proposal answers the new API key in
    `api_key` — this once, to this checker; it is stored nowhere."""
    return await service_of(request).decide(caller_of(request), proposal_id, data)


# -- transfers -----------------------------------------------------------------------------


def transfer_query(params: dict) -> TransferQuery:
    try:
        return msgspec.convert({k: v for k, v in params.items() if v not in ("", None)},
                               TransferQuery, strict=False)
    except msgspec.ValidationError as error:
        raise AdminRefusal(AdminResult.VALIDATION_ERROR, str(error)) from None


@get("/transfers", tags=["transfers"], responses=RESPONSES["api_transfers"])
async def api_transfers(
    request: Request, transfer_id: FromQuery[str] = "", payer_participant_id: FromQuery[int] = 0,
    end_to_end_id: FromQuery[str] = "", participant_id: FromQuery[int] = 0,
    transfer_state: Annotated[str, QueryParameter(name="state", pattern=TRANSFER_STATES)] = "",
    from_ns: FromQuery[int] = 0, to_ns: FromQuery[int] = 0, limit: FromQuery[int] = 50,
    before_seq: FromQuery[int] = 0,
) -> TransferSearch:
    """Search the transfers the switch retains, newest first, `limit` at a time: pass the
    answer's `next_before_seq` as `before_seq` for the next (older) page. With
    `payer_participant_id` and `transfer_id` it is a direct lookup; otherwise a bounded
    scan (`complete` says whether it reached the oldest). `from_ns`/`to_ns`: UTC
    nanoseconds since the epoch."""
    query = transfer_query(dict(
        transfer_id=transfer_id, payer_participant_id=payer_participant_id,
        end_to_end_id=end_to_end_id, participant_id=participant_id, state=transfer_state,
        from_ns=from_ns, to_ns=to_ns, limit=limit, before_seq=before_seq))
    return service_of(request).search(query)


@get("/transfers/{payer_participant_id:int}/{transfer_id:str}/timeline", tags=["transfers"], responses=RESPONSES["api_timeline"])
async def api_timeline(request: Request, payer_participant_id: FromPath[int],
                       transfer_id: FromPath[str]) -> TransferTimeline:
    """Every message, state and ledger event of one transfer, with timestamps (UTC ns)."""
    return service_of(request).timeline(payer_participant_id, transfer_id)


# -- audit, directory, overview ------------------------------------------------------------


@get("/audit", tags=["audit"], responses=RESPONSES["api_audit"])
async def api_audit(request: Request, before_seq: FromQuery[int] = 0,
                    limit: FromQuery[int] = 100, actor: FromQuery[str] = "",
                    action: FromQuery[str] = "") -> list[AuditRecordView]:
    return await service_of(request).audit_page(before_seq or None, limit, actor, action)


@get("/audit/verify", tags=["audit"], responses=RESPONSES["api_audit_verify"])
async def api_audit_verify(request: Request) -> AuditVerification:
    """Walk the hash chain; names the first broken record."""
    return await service_of(request).verify_audit()


@get("/directory", tags=["directory"], responses=RESPONSES["api_directory"])
async def api_directory(request: Request) -> DirectoryPanel:
    return await service_of(request).directory_panel()


@get("/overview", tags=["overview"], responses=RESPONSES["api_overview"])
async def api_overview(request: Request) -> Overview:
    return service_of(request).overview()


# -- settlement (switch/settlement, docs/settlement.md) ------------------------------------------


@get("/settlement/windows", tags=["settlement"], responses=RESPONSES["api_settlement_windows"])
async def api_settlement_windows(
    request: Request,
    currency: Annotated[str, QueryParameter(pattern=r"^([A-Z]{3})?$(?!\n)")] = "",
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> list[WindowSummary]:
    """Settlement windows, newest first (one currency or all): state, totals, fees, what
    net debtors pay in, the RTGS reference or last rejection."""
    return service_of(request).settlement_windows(currency, limit)


@get("/settlement/windows/{window_id:int}", tags=["settlement"],
     responses=RESPONSES["api_settlement_window"])
async def api_settlement_window(request: Request, window_id: FromPath[int]) -> WindowDetail:
    """One window: every participant's net position (live while open; sum with the hub's
    fees: 0), the settlement postings made at its confirmation, dues, and the bilateral
    matrix."""
    return service_of(request).settlement_window(window_id)


@get("/settlement/windows/{window_id:int}/instructions", tags=["settlement"],
     media_type="application/xml", responses=RESPONSES["api_settlement_instructions"])
async def api_settlement_instructions(request: Request, window_id: FromPath[int]) -> Response:
    """The RTGS instructions of a deferred-net window waiting for settlement (or settled):
    ISO 20022 pacs.009.001.08, message id PONTE-W<window>, one credit transfer per net
    debtor (to the scheme's settlement account) and per net creditor (from it)."""
    document = service_of(request).settlement_instructions(window_id)
    return Response(document, media_type="application/xml", headers={
        "Content-Disposition": f'attachment; filename="ponte-pacs009-w{window_id}.xml"'})


@get("/settlement/windows/{window_id:int}/statements/{participant_id:int}",
     tags=["settlement"], responses=RESPONSES["api_settlement_statement"])
async def api_settlement_statement(
    request: Request, window_id: FromPath[int], participant_id: FromPath[int],
    statement_format: Annotated[str, QueryParameter(
        name="format", pattern=r"^(camt053|camt052|csv)$(?!\n)")] = "camt053",
) -> Stream:
    """A participant's statement of a window, streamed: camt053 (closed windows), camt052
    (an intraday report; the open window too) or csv — every entry with the transfer's
    ids, opening and closing balances."""
    media_type, name, chunks = await service_of(request).settlement_statement(
        participant_id, window_id, statement_format)
    return Stream(chunks, media_type=media_type,
                  headers={"Content-Disposition": f'attachment; filename="{name}"'})


@post("/settlement/rtgs", status_code=200, tags=["settlement"],
      operation_class=RtgsAnswerOperation, responses=RESPONSES["api_rtgs_answer"],
      request_max_body_size=limits.RTGS_ANSWER_BYTES_MAX)
async def api_rtgs_answer(request: Request) -> RtgsAnswerView:
    """The RTGS's answer to a window's instructions (pacs.002.001.10, application/xml),
    posted by the RTGS's operator account (operator role, CSRF token as any change). Every
    instruction settled (ACSC): the window is settled, its postings posted. A rejection
    (RJCT) or a status that is not final yet is refused with its typed result and changes
    nothing; a rejection is shown on the window until it settles."""
    return await service_of(request).rtgs_answer(caller_of(request), await request.body())


# -- public: health and metrics --------------------------------------------------------------


@get("/health", opt=PUBLIC, tags=["health"], responses=RESPONSES["health"])
async def health(request: Request) -> Response[Health]:
    answer = service_of(request).health()
    return Response(answer, status_code=200 if answer.status == "ok" else 503)


@get("/metrics", opt=PUBLIC, tags=["health"], media_type="text/plain; version=0.0.4")
async def metrics(request: Request) -> bytes:
    """Prometheus text exposition of the server's registry (`ponte_` names, base units)."""
    service = service_of(request)
    extra = (
        "# HELP ponte_admin_login_rate_limited_total Logins refused by the rate limiter.\n"
        "# TYPE ponte_admin_login_rate_limited_total counter\n"
        f"ponte_admin_login_rate_limited_total {service.login_rate_limited_total}\n"
        "# HELP ponte_admin_login_busy_total Logins refused because too many were being "
        "hashed at once.\n"
        "# TYPE ponte_admin_login_busy_total counter\n"
        f"ponte_admin_login_busy_total {service.login_busy_total}\n"
    ).encode()
    return service.switch.metrics_text() + extra


API_HANDLERS = [
    api_login, api_session, api_logout, api_users, api_create_user, api_disable_user,
    api_enable_user, api_participants, api_participant, api_suspend, api_resume,
    api_categories, api_proposals, api_propose, api_proposal, api_decide,
    api_transfers, api_timeline, api_audit, api_audit_verify, api_directory, api_overview,
    api_settlement_windows, api_settlement_window, api_settlement_instructions,
    api_settlement_statement, api_rtgs_answer,
]


async def _background(service: AdminService, interval_s: float) -> None:
    """Sample the counters once a second, sweep dead sessions once a minute, and anchor the
    audit head in the switch's journal every `AUDIT_ANCHOR_INTERVAL_S` (when it moved)."""
    loop = asyncio.get_running_loop()
    next_sweep = next_anchor = loop.time()
    while True:
        try:
            service.sample()
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + SESSIONS_SWEEP_S
                await service.store.delete_expired_sessions(
                    service.clock_ns(), limits.SESSION_IDLE_S * limits.NS_PER_S)
            if loop.time() >= next_anchor:
                next_anchor = loop.time() + limits.AUDIT_ANCHOR_INTERVAL_S
                await service.anchor_audit()
        except Exception:  # noqa: BLE001 - the console must outlive one bad sample
            log.exception("event=admin_background_failed")
        await asyncio.sleep(interval_s)


class WebUi(NamedTuple):
    """Pages served beside the JSON API (the operator console, switch/console): their
    route handlers, their templates and static files, and the template engine's setup."""

    handlers: list
    templates_dir: Path
    static_dir: Path
    template_callback: Callable[[Any], None]


def create_app(service: AdminService, *, ui: WebUi | None = None, secure_cookies: bool = False,
               sample_interval_s: float = limits.LIVE_SAMPLE_INTERVAL_S,
               debug: bool = False) -> Litestar:
    """The admin JSON API (and `ui`'s pages when given: `switch.console.pages.create_console_app`)."""
    tasks: list[asyncio.Task] = []

    async def start() -> None:
        await service.restore_settings()
        await service.resume_approved()
        tasks.append(asyncio.create_task(_background(service, sample_interval_s),
                                         name="admin-background"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    api = Router(path="/api/admin", route_handlers=API_HANDLERS)
    handlers = [api, health, metrics]
    template_config = None
    if ui is not None:
        handlers.append(create_static_files_router(
            path="/static", directories=[ui.static_dir], opt=PUBLIC, include_in_schema=False))
        handlers.extend(ui.handlers)
        template_config = TemplateConfig(directory=ui.templates_dir, engine=JinjaTemplateEngine,
                                         engine_callback=ui.template_callback)
    return Litestar(
        route_handlers=handlers,
        before_request=authenticate,
        after_request=add_security_headers,
        exception_handlers={
            AdminRefusal: refusal_handler,
            ValidationException: validation_handler,
            HTTPException: http_error_handler,
        },
        template_config=template_config,
        openapi_config=OpenAPIConfig(
            title="Ponte admin API", version="1",
            description="Operator API of the Ponte payment switch. Log in with POST "
                        "/api/admin/session; send the returned csrf_token as X-CSRF-Token "
                        "on every POST, PUT and DELETE. Errors are AdminError bodies.",
            path=OPENAPI_PATH, render_plugins=[JsonRenderPlugin()],
        ),
        request_max_body_size=limits.REQUEST_BODY_BYTES_MAX,
        state=_state(service, secure_cookies),
        on_startup=[start],
        on_shutdown=[stop],
        signature_types=[AdminError],
        debug=debug,
    )


def _state(service: AdminService, secure_cookies: bool):
    from litestar.datastructures import State

    return State({"service": service, "secure_cookies": secure_cookies, "sse_clients": 0})


class ConsoleServer:
    """The app under uvicorn, in the caller's event loop (the switch's own). Port 0 picks a
    free port; `port` tells which after `start`."""

    def __init__(self, app: Litestar, host: str, port: int, *, ssl_certfile: str = "",
                 ssl_keyfile: str = ""):
        import uvicorn

        self.host = host
        config = uvicorn.Config(app, host=host, port=port, loop="none", lifespan="on",
                                log_level="warning", access_log=False, proxy_headers=False,
                                ssl_certfile=ssl_certfile or None, ssl_keyfile=ssl_keyfile or None)
        self.tls = bool(ssl_certfile)
        self._server = uvicorn.Server(config)
        # The switch owns the process's signals: uvicorn must not take them over.
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        self._task: asyncio.Task | None = None

    async def start(self, timeout_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="admin-console")
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise RuntimeError("the console server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the console server did not start in time")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, 10)
        except asyncio.TimeoutError:
            self._task.cancel()
        self._task = None
