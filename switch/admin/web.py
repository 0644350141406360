"""HTTP plumbing shared by the JSON API and the console pages: sessions from cookies, the
CSRF check on every state-changing request, typed error answers, security headers.

Every request passes `authenticate` (a Litestar `before_request` hook) unless its handler is
marked `opt={"public": True}`: no session means 401 for the API and a redirect to the login
page for the console; a POST, PUT, PATCH or DELETE without the session's CSRF token (header
`X-CSRF-Token` or form field `csrf_token`) is refused before its handler runs. It must never
put a session token anywhere but the HttpOnly cookie, nor echo one into a page or a log.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect, Template

from switch.admin import limits
from switch.admin.service import AdminService, Caller
from switch.admin.types import AdminRefusal, AdminResult, Session

OPENAPI_PATH = "/api/admin/schema"  # the API's description is public, like /health
SESSION_COOKIE = "ponte_session"
LOGIN_CSRF_COOKIE = "ponte_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Scripts, styles and connections only from this origin: the console has no inline script,
# no CDN and no eval (htmx runs with allowEval off, see base.html).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def service_of(request: Request) -> AdminService:
    return request.app.state.service


def client_address(request: Request) -> str:
    """The peer's address. Forwarded-for headers are not trusted: a client could write any
    address there and escape the per-address login limit."""
    client = request.client
    return client.host if client is not None else "unknown"


def session_of(request: Request) -> Session:
    session = request.state.get("session")
    assert session is not None, "handler not behind authenticate"
    return session


def caller_of(request: Request) -> Caller:
    return Caller.of(session_of(request), client_address(request))


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def secure_cookies(request: Request) -> bool:
    """Secure cookies whenever the console is served over TLS (or configured to be)."""
    return bool(request.app.state.get("secure_cookies")) or request.url.scheme == "https"


def session_cookie(request: Request, token: str, max_age_s: int) -> Cookie:
    return Cookie(key=SESSION_COOKIE, value=token, path="/", httponly=True, samesite="strict",
                  secure=secure_cookies(request), max_age=max_age_s)


def cleared_session_cookie(request: Request) -> Cookie:
    return Cookie(key=SESSION_COOKIE, value="", path="/", httponly=True, samesite="strict",
                  secure=secure_cookies(request), max_age=0)


async def form_of(request: Request) -> dict[str, str]:
    """The request's form as a plain dict of strings (the last value of a repeated field)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def convert_form(data: dict[str, Any], struct_type, drop: tuple[str, ...] = (CSRF_FIELD,)):
    """A form (strings) into a request Struct, with the Struct's constraints; bad input is
    a VALIDATION_ERROR refusal, raised before anything changes."""
    cleaned = {key: value for key, value in data.items() if key not in drop}
    try:
        return msgspec.convert(cleaned, struct_type, strict=False)
    except msgspec.ValidationError as error:
        raise AdminRefusal(AdminResult.VALIDATION_ERROR, str(error)) from None


async def authenticate(request: Request) -> Response | None:
    """before_request: attach the session, enforce CSRF; answer early when refused."""
    if request.route_handler.opt.get("public") or request.url.path.startswith(OPENAPI_PATH):
        return None
    service = service_of(request)
    session = await service.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        refusal = AdminRefusal(AdminResult.NOT_AUTHENTICATED, "log in first")
        if is_api(request):
            return refusal_response(request, refusal)
        if is_htmx(request):
            return Response(b"", status_code=401, headers={"HX-Redirect": "/login"})
        return Redirect(path="/login", query_params={"next": request.url.path})
    request.state.session = session
    if request.method in SAFE_METHODS:
        return None
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        supplied = (await form_of(request)).get(CSRF_FIELD)
    try:
        await service.check_csrf(session, supplied, client_address(request),
                                 f"{request.method} {request.url.path}")
    except AdminRefusal as refusal:
        return refusal_response(request, refusal)
    return None


def refusal_response(request: Request, refusal: AdminRefusal) -> Response:
    headers = {}
    if refusal.retry_after_s:
        headers["Retry-After"] = str(refusal.retry_after_s)
    if is_api(request):
        return Response(refusal.body(), status_code=refusal.http_status, headers=headers)
    session = request.state.get("session")
    template = "_error.html" if is_htmx(request) else "error.html"
    if is_htmx(request):
        # htmx does not swap error answers by default; retarget the message to the page's
        # notice area so the operator sees why.
        headers.update({"HX-Retarget": "#notice", "HX-Reswap": "innerHTML"})
    return Template(template, context={"refusal": refusal.body(), "session": session,
                                       "status": refusal.http_status},
                    status_code=refusal.http_status, headers=headers)


def refusal_handler(request: Request, error: AdminRefusal) -> Response:
    return refusal_response(request, error)


def validation_handler(request: Request, error: ValidationException) -> Response:
    extra = error.extra if isinstance(error.extra, list) else []
    detail = "; ".join(f"{item.get('key', '')}: {item.get('message', '')}" for item in extra
                       if isinstance(item, dict)) or str(error.detail)
    return refusal_response(request, AdminRefusal(AdminResult.VALIDATION_ERROR, detail[:500]))


def http_error_handler(request: Request, error: HTTPException) -> Response:
    """Framework errors (404, 405, 413 ...) in the same typed shape for the API."""
    if is_api(request):
        result = AdminResult.VALIDATION_ERROR if error.status_code < 500 else (
            AdminResult.SWITCH_UNAVAILABLE)
        body = AdminRefusal(result, str(error.detail)).body()
        return Response(body, status_code=error.status_code)
    return Template("error.html", status_code=error.status_code, context={
        "refusal": {"result": "HTTP_ERROR", "code": error.status_code,
                    "detail": str(error.detail)},
        "session": request.state.get("session"), "status": error.status_code})


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


assert limits.SESSION_LIFETIME_S > 0
