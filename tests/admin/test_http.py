"""The admin HTTP app (JSON API and console forms) in front of the real service and core:
sessions and cookie flags, CSRF on every state-changing request, roles, typed errors that
change nothing, maker-checker across two sessions, OpenAPI, metrics and live events."""

from __future__ import annotations

import re

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from admin_helpers import BANK_A, PASSWORD
from switch.admin import limits
from switch.console.pages import create_console_app


@pytest.fixture
async def app(embedded_world):
    return create_console_app(embedded_world.service, sample_interval_s=0.05)


async def login(client, username: str) -> str:
    answer = await client.post("/api/admin/session",
                               json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return answer.json()["csrf_token"]


def error_of(answer) -> str:
    return answer.json()["result"]


async def test_login_sets_an_httponly_samesite_strict_cookie_and_no_secure_on_plain_http(app):
    async with AsyncTestClient(app=app) as client:
        answer = await client.post("/api/admin/session",
                                   json={"username": "bob", "password": PASSWORD})
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("ponte_session=")
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert "Secure" not in cookie
        body = answer.json()
        assert body["username"] == "bob" and body["role"] == "operator"
        assert cookie.split(";")[0].split("=", 1)[1] not in answer.text  # token only in the cookie


async def test_cookies_are_secure_when_the_console_is_on_tls(embedded_world):
    app = create_console_app(embedded_world.service, secure_cookies=True)
    async with AsyncTestClient(app=app) as client:
        answer = await client.post("/api/admin/session",
                                   json={"username": "bob", "password": PASSWORD})
        assert "Secure" in answer.headers["set-cookie"]


async def test_without_a_session_the_api_answers_401_and_pages_redirect_to_login(app):
    async with AsyncTestClient(app=app) as client:
        answer = await client.get("/api/admin/participants")
        assert answer.status_code == 401
        assert error_of(answer) == "NOT_AUTHENTICATED"
        page = await client.get("/participants", follow_redirects=False)
        assert page.status_code in (302, 303, 307)
        assert page.headers["location"].startswith("/login")
        assert (await client.get("/health")).status_code == 200
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "ponte_" in metrics.text


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(app, embedded_world):
    async with AsyncTestClient(app=app) as client:
        token = await login(client, "bob")
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
            answer = await client.post(f"/api/admin/participants/{BANK_A}/suspend",
                                       headers=headers)
            assert answer.status_code == 403
            assert error_of(answer) == "CSRF_TOKEN_INVALID"
        form = await client.post(f"/participants/{BANK_A}/suspend", data={"note": "x"})
        assert form.status_code == 403
        assert "CSRF_TOKEN_INVALID" in form.text
        assert embedded_world.status(BANK_A) == "active"
        # Logging out is state-changing too.
        assert (await client.delete("/api/admin/session")).status_code == 403
        answer = await client.post(f"/api/admin/participants/{BANK_A}/suspend",
                                   headers={"X-CSRF-Token": token})
        assert answer.status_code == 200
        assert answer.json()["status"] == "suspended"


async def test_console_forms_carry_the_token_and_work(app, embedded_world):
    async with AsyncTestClient(app=app) as client:
        await login(client, "bob")
        page = await client.get(f"/participants/{BANK_A}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        answer = await client.post(f"/participants/{BANK_A}/suspend",
                                   data={"csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 303
        assert embedded_world.status(BANK_A) == "suspended"
        shown = await client.get(answer.headers["location"])
        assert "Participant suspended" in shown.text


async def test_a_viewer_gets_403_role_insufficient_from_api_and_console(app, embedded_world):
    async with AsyncTestClient(app=app) as client:
        token = await login(client, "vic")
        answer = await client.post(f"/api/admin/participants/{BANK_A}/suspend",
                                   headers={"X-CSRF-Token": token})
        assert answer.status_code == 403
        assert error_of(answer) == "ROLE_INSUFFICIENT"
        form = await client.post(f"/participants/{BANK_A}/suspend",
                                 data={"csrf_token": token})
        assert form.status_code == 403
        assert "ROLE_INSUFFICIENT" in form.text
        assert embedded_world.status(BANK_A) == "active"
        # Reading is allowed.
        assert (await client.get("/api/admin/participants")).status_code == 200


async def test_bad_input_is_a_typed_400_and_writes_nothing(app, embedded_world):
    async with AsyncTestClient(app=app) as client:
        token = await login(client, "bob")
        audit_before = await embedded_world.audit_count()
        bad_bodies = [
            {"kind": "fund", "participant_id": BANK_A, "currency": "BRL", "amount_minor": 0},
            {"kind": "fund", "participant_id": BANK_A, "currency": "brl", "amount_minor": 5},
            {"kind": "fund", "participant_id": BANK_A, "currency": "BRL", "amount_minor": 1.5},
            {"kind": "fund", "participant_id": BANK_A, "currency": "BRL", "amount_minor": 5,
             "surprise": 1},
            {"kind": "steal", "participant_id": BANK_A, "currency": "BRL", "amount_minor": 5},
            {"kind": "net_debit_cap", "participant_id": -1, "currency": "KES", "cap_minor": 5},
        ]
        for body in bad_bodies:
            answer = await client.post("/api/admin/proposals", json=body,
                                       headers={"X-CSRF-Token": token})
            assert answer.status_code == 400, (body, answer.text)
            assert error_of(answer) == "VALIDATION_ERROR"
            assert answer.json()["code"] == 4
        not_json = await client.post("/api/admin/proposals", content=b"{nope",
                                     headers={"X-CSRF-Token": token,
                                              "Content-Type": "application/json"})
        assert not_json.status_code == 400
        form = await client.post("/approvals", data={
            "csrf_token": token, "kind": "fund", "participant_id": str(BANK_A),
            "currency": "BRL", "amount_minor": "-5"})
        assert form.status_code == 400
        assert "VALIDATION_ERROR" in form.text
        assert (await client.get("/api/admin/proposals")).json() == []
        assert await embedded_world.audit_count() == audit_before


async def test_maker_and_checker_in_two_sessions(app, embedded_world):
    before = embedded_world.balance(BANK_A)
    async with AsyncTestClient(app=app) as client:
        sessions = {}
        for username in ("bob", "carol"):
            client.cookies.clear()
            token = await login(client, username)
            sessions[username] = {"X-CSRF-Token": token,
                                  "Cookie": f"ponte_session={client.cookies['ponte_session']}"}
        client.cookies.clear()
        maker, checker = sessions["bob"], sessions["carol"]
        proposed = await client.post("/api/admin/proposals", headers=maker,
                                     json={"kind": "fund", "participant_id": BANK_A,
                                           "currency": "BRL", "amount_minor": 1234})
        assert proposed.status_code == 201, proposed.text
        proposal_id = proposed.json()["proposal_id"]
        own = await client.post(f"/api/admin/proposals/{proposal_id}/decision", headers=maker,
                                json={"approve": True})
        assert own.status_code == 403
        assert error_of(own) == "CHECKER_MUST_DIFFER"
        assert embedded_world.balance(BANK_A) == before
        approved = await client.post(f"/api/admin/proposals/{proposal_id}/decision",
                                     headers=checker, json={"approve": True})
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "executed"
        assert approved.json()["decided_by"] == "carol"
        assert embedded_world.balance(BANK_A) == before + 1234
        listed = (await client.get("/api/admin/proposals", params={"state": "executed"},
                                   headers=maker)).json()
        assert [p["proposal_id"] for p in listed] == [proposal_id]


async def test_login_rate_limit_answers_429_with_retry_after(app):
    async with AsyncTestClient(app=app) as client:
        for _ in range(limits.LOGIN_FAILURES_PER_USER_MAX):
            answer = await client.post("/api/admin/session",
                                       json={"username": "carol", "password": "bad guess here"})
            assert answer.status_code == 401
            assert error_of(answer) == "LOGIN_FAILED"
        answer = await client.post("/api/admin/session",
                                   json={"username": "carol", "password": PASSWORD})
        assert answer.status_code == 429
        assert error_of(answer) == "LOGIN_RATE_LIMITED"
        assert int(answer.headers["retry-after"]) == answer.json()["retry_after_s"] > 0
        assert "set-cookie" not in answer.headers


async def test_the_login_form_needs_its_own_token_and_never_redirects_off_site(app):
    async with AsyncTestClient(app=app) as client:
        page = await client.get("/login?next=//evil.example/x")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        forged = await client.post("/login", data={"username": "bob", "password": PASSWORD,
                                                    "csrf_token": "forged", "next": "/"})
        assert forged.status_code == 403
        assert "ponte_session" not in forged.headers.get("set-cookie", "")
        answer = await client.post("/login", follow_redirects=False, data={
            "username": "bob", "password": PASSWORD, "csrf_token": token,
            "next": "//evil.example/x"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"
        assert "ponte_session=" in answer.headers["set-cookie"]


async def test_pages_send_a_strict_content_security_policy(app):
    async with AsyncTestClient(app=app) as client:
        await login(client, "vic")
        for path in ("/", "/participants", "/approvals", "/transfers", "/directory", "/audit"):
            answer = await client.get(path)
            assert answer.status_code == 200, path
            policy = answer.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe" not in policy
            assert "<script>" not in answer.text  # no inline script for the policy to block
            assert 'href="#main"' in answer.text  # the skip link


async def test_amounts_are_shown_in_their_currency_units(app, embedded_world):
    async with AsyncTestClient(app=app) as client:
        await login(client, "vic")
        page = await client.get(f"/participants/{BANK_A}")
        assert "10,000.00 BRL" in page.text  # 1,000,000 minor units, exponent 2


async def test_the_openapi_document_describes_the_api_from_its_types(app):
    async with AsyncTestClient(app=app) as client:
        document = (await client.get("/api/admin/schema/openapi.json")).json()
        paths = document["paths"]
        for path in ("/api/admin/session", "/api/admin/participants",
                     "/api/admin/proposals", "/api/admin/proposals/{proposal_id}/decision",
                     "/api/admin/transfers", "/api/admin/audit/verify"):
            assert path in paths, path
        schemas = document["components"]["schemas"]
        for name in ("FundProposal", "ProposalView", "ParticipantView", "TransferTimeline"):
            assert name in schemas, name
        fund = schemas["FundProposal"]
        assert fund["properties"]["amount_minor"]["minimum"] == 1
        assert not any(p.startswith("/participants") for p in paths)  # pages stay out


async def test_live_events_stream_overview_json_over_a_real_socket(embedded_world):
    """Served by uvicorn on a real port: the test client buffers whole answers, and an
    event stream never ends."""
    import httpx

    from switch.admin.app import ConsoleServer

    embedded_world.send()
    server = ConsoleServer(create_console_app(embedded_world.service, sample_interval_s=0.05),
                           "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await login(client, "vic")
            async with client.stream("GET", "/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                buffer = ""
                async for chunk in stream.aiter_text():
                    buffer += chunk
                    if re.search(r"data: .*\r?\n\r?\n", buffer):
                        break
    finally:
        await server.stop()
    event = re.search(r"event: overview\r?\ndata: (.*)\r?\n", buffer)
    assert event is not None, buffer
    overview = msgspec.json.decode(event.group(1))
    assert overview["transfers_total"] == 1
    assert overview["outcomes"] == {"OK": 1}
    assert overview["series_full"] is True


async def test_the_openapi_document_has_examples_for_every_body_and_answer(app):
    """Every request body and every answer, success and refusal, has examples, and every
    request example is one the API accepts (decoded with its handler's type)."""
    from switch.admin.types import AdminError, Decision, LoginRequest, ProposalBody, UserCreate

    body_types = {("post", "/api/admin/session"): LoginRequest,
                  ("post", "/api/admin/users"): UserCreate,
                  ("post", "/api/admin/proposals"): ProposalBody,
                  ("post", "/api/admin/proposals/{proposal_id}/decision"): Decision}
    async with AsyncTestClient(app=app) as client:
        document = (await client.get("/api/admin/schema/openapi.json")).json()
    bodies = 0
    for path, item in document["paths"].items():
        if path == "/metrics":
            continue
        for method, operation in item.items():
            if "requestBody" in operation and path == "/api/admin/settlement/rtgs":
                assert operation["requestBody"]["content"]["application/xml"]["examples"]
            elif "requestBody" in operation:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                examples = schema.get("examples")
                assert examples, (method, path)
                for example in examples:
                    msgspec.convert(example, body_types[(method, path)])
                bodies += 1
            for status, response in operation["responses"].items():
                if "application/json" not in response["content"] and int(status) < 400:
                    # Settlement documents: XML (or CSV), with an example.
                    assert response["content"]["application/xml"]["examples"], (path, status)
                    continue
                content = response["content"]["application/json"]
                named = content.get("examples")
                assert named, (method, path, status)
                if int(status) >= 400 and path != "/health":  # 503 there is Health
                    assert content["schema"] == {"$ref": "#/components/schemas/AdminError"}
                    for example in named.values():
                        refusal = msgspec.convert(example["value"], AdminError)
                        assert str(HTTP_STATUS_BY_NAME[refusal.result]) == status
    assert bodies == len(body_types)
    kinds = {example["kind"] for example in document["paths"]["/api/admin/proposals"]["post"][
        "requestBody"]["content"]["application/json"]["schema"]["examples"]}
    from switch.admin.types import PROPOSAL_ROLES

    assert kinds == set(PROPOSAL_ROLES)  # one example of every kind of change


HTTP_STATUS_BY_NAME = {result.name: status for result, status in __import__(
    "switch.admin.types", fromlist=["HTTP_STATUS"]).HTTP_STATUS.items()}
