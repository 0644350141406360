"""The HTTP connector's OpenAPI 3.1 document and its /docs page.

Schemas are generated from the msgspec Structs the connector really decodes and encodes
(`msgspec.json.schema_components`), so a constraint added to a core message shows up here
by itself. Paths are a hand-written table (`PATHS`), because what a route means (202 then a
callback, which errors it can answer) is a decision, not a type; a test checks this table
and the router in `app.py` name exactly the same routes. Callbacks the switch sends are the
`webhooks` section. The /docs page is rendered once from the document, as static HTML with
no script and no CDN.

This module must never import anything that does I/O.
"""

from __future__ import annotations

import html
from typing import Any

import msgspec

from connectors.http import limits
from connectors.http.errors import ErrorBody, http_status
from connectors.http.resources import (
    Accepted,
    Health,
    PayeeAnswerBody,
    RequestToPayDecisionBody,
)
from switch.core.messages import (
    AliasAnswer,
    AliasRegistration,
    Outbound,
    ParticipantView,
    RequestToPay,
    ResolveAnswer,
    ReturnRequest,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import DESCRIPTIONS, Result

REF = "#/components/schemas/{name}"
# Core wire messages carry a `type` tag; in a request body it may be left out (the route
# says what the body is), so it is not `required` in the request schemas.
_REQUEST_TAGGED = ("TransferRequest", "ReturnRequest", "RequestToPay")


def _ref(name: str) -> dict:
    return {"$ref": REF.format(name=name)}


def _json(name: str) -> dict:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _error(description: str) -> dict:
    return {"description": description, **_json("ErrorBody")}


_PATH_PARAMS = {
    "payer_participant_id": ("integer", "The payer participant: transfer ids are scoped by it."),
    "payee_participant_id": ("integer", "The payee participant: request ids are scoped by it."),
    "transfer_id": ("string", "The payer's transfer id (its idempotency key)."),
    "request_id": ("string", "The payee's request-to-pay id."),
    "alias_type": ("string", "MSISDN, EMAIL, NATIONAL_ID, HANDLE, RANDOM or ACCOUNT."),
    "alias_value": ("string", "The alias, percent-encoded (e.g. +254700000001 or a@b.example)."),
}


def _params(*names: str) -> list[dict]:
    return [
        {"name": name, "in": "path", "required": True, "description": _PATH_PARAMS[name][1],
         "schema": {"type": _PATH_PARAMS[name][0]}}
        for name in names
    ]


_AUTH_ERRORS = {
    "401": _error("No or unknown API key (VALIDATION_ERROR), or a missing or bad JWS "
                  "signature (INVALID_SIGNATURE)."),
}
_BODY_ERRORS = {
    "400": _error("Malformed JSON (MALFORMED_SYNTAX) or a field that breaks its schema or "
                  "is unknown (VALIDATION_ERROR; `detail` names it, e.g. `$.amount_minor`)."),
    "411": _error("No Content-Length (chunked bodies are refused)."),
    "413": _error(f"Body larger than {limits.REQUEST_BODY_BYTES_MAX} bytes."),
    "415": _error("Content-Type is not JSON."),
}
_BUSY = {"503": _error("SERVER_BUSY or SERVICE_UNAVAILABLE: retry later with the same id.")}
_SIGNATURE_HEADERS = [
    {"name": "X-Jws-Signature", "in": "header", "required": False,
     "description": "Detached compact JWS of the body: <b64url(header)>..<b64url(sig)>; "
                    "the protected header must carry this request's FSPIOP-URI (path and "
                    "query as sent) and FSPIOP-HTTP-Method.",
     "schema": {"type": "string"}},
    {"name": "FSPIOP-Signature", "in": "header", "required": False,
     "description": 'The same signature in the Mojaloop form: {"protectedHeader": "...", '
                    '"signature": "..."}.',
     "schema": {"type": "string"}},
]


def _accepted(kind: str) -> dict:
    return {"202": {"description": f"Recorded durably ({kind}); the outcome arrives at the "
                                   "callback URL.", **_json("Accepted")}}


def _operation(operation_id: str, summary: str, description: str, *, body: str | None = None,
               responses: dict, params: tuple[str, ...] = (), query: list[dict] | None = None,
               public: bool = False) -> dict:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "responses": dict(responses),
    }
    parameters = _params(*params) + (query or [])
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
        parameters += _SIGNATURE_HEADERS
        operation["responses"].update(_BODY_ERRORS)
    if parameters:
        operation["parameters"] = parameters
    if public:
        operation["security"] = []
    else:
        operation["responses"].update(_AUTH_ERRORS)
        operation["responses"].update(_BUSY)
    return operation


# The routes, by path template and method. Keep in step with `app.ROUTES` (a test checks).
PATHS: dict[str, dict[str, dict]] = {
    "/aliases": {
        "post": _operation(
            "registerAlias", "Register an alias for one of your accounts",
            "Binds an alias to an account of the calling participant. Registering the same "
            "alias again answers 200 with the stored registration, so retries are safe. A "
            "directory refusal answers VALIDATION_ERROR (or PARTY_NOT_FOUND) with `detail` "
            "naming the field and the directory's own code.",
            body="AliasRegistration",
            responses={"200": {"description": "Registered.", **_json("AliasAnswer")}}),
    },
    "/aliases/{alias_type}/{alias_value}": {
        "get": _operation(
            "resolveAlias", "Resolve an alias (lookup before a transfer)",
            "Answers the payee participant, an opaque account reference and a masked name. "
            "Charges the anti-enumeration buckets of the payer end user (`payer_user_ref`) "
            "and of the calling participant; a transfer to the same alias within a minute "
            "reuses this lookup.",
            params=("alias_type", "alias_value"),
            query=[{"name": "payer_user_ref", "in": "query", "required": False,
                    "description": "Opaque id of the payer end user (bucket key).",
                    "schema": {"type": "string", "maxLength": 128}}],
            responses={"200": {"description": "Found.", **_json("ResolveAnswer")},
                       "404": _error("PARTY_NOT_FOUND: no such alias."),
                       "400": _error("VALIDATION_ERROR: malformed alias.")}),
        "delete": _operation(
            "deleteAlias", "Delete one of your aliases",
            "Removes an alias the calling participant holds.",
            params=("alias_type", "alias_value"),
            responses={"200": {"description": "Deleted.", **_json("AliasAnswer")},
                       "404": _error("PARTY_NOT_FOUND: no such alias."),
                       "400": _error("VALIDATION_ERROR: not yours, or malformed.")}),
    },
    "/transfers": {
        "post": _operation(
            "createTransfer", "Send a push credit transfer",
            "`transfer_id` is your idempotency key: the same id with the same body is "
            "harmless (the first outcome stands and is sent again); with a different body "
            "it is refused EXISTS_WITH_DIFFERENT_*. 202 means recorded; the outcome "
            "(TransferOutcome, or Refused) arrives at your callback URL and is always "
            "retrievable with GET /transfers/{payer_participant_id}/{transfer_id}.",
            body="TransferRequest", responses=_accepted("transfer")),
    },
    "/transfers/{payer_participant_id}/{transfer_id}": {
        "get": _operation(
            "getTransfer", "Where a transfer stands (pacs.028)",
            "Either party may ask at any time; answered once the state it reveals is "
            "durable.",
            params=("payer_participant_id", "transfer_id"),
            responses={"200": {"description": "The transfer's state.",
                               **_json("TransferOutcome")},
                       "404": _error("TRANSFER_NOT_FOUND.")}),
        "put": _operation(
            "answerCreditRequest", "The payee's answer to a credit request",
            "PUT to the transfer it answers, as FSPIOP's PUT /transfers/{ID} (the URL names "
            "the transfer, the body says accept or reject). Answering twice is harmless. "
            "The final TransferOutcome follows at both parties' callback URLs.",
            body="PayeeAnswerBody", params=("payer_participant_id", "transfer_id"),
            responses=_accepted("payee_answer")),
    },
    "/returns": {
        "post": _operation(
            "createReturn", "Return (refund) a committed transfer you received",
            "A new transfer in the opposite direction, linked to the original; all returns "
            "of one transfer add up to at most its amount. Idempotent by `transfer_id` like "
            "a transfer; the outcome arrives at your callback URL.",
            body="ReturnRequest", responses=_accepted("return")),
    },
    "/requests-to-pay": {
        "post": _operation(
            "createRequestToPay", "Ask a payer to pay (request-to-pay)",
            "The payer receives a RequestToPayNotice and approves or declines; the "
            "RequestToPayOutcome arrives at your callback URL.",
            body="RequestToPay", responses=_accepted("request_to_pay")),
    },
    "/requests-to-pay/{payee_participant_id}/{request_id}": {
        "put": _operation(
            "decideRequestToPay", "The payer's decision on a request-to-pay",
            "Approving names the transfer the request becomes (its id and expiry); that "
            "transfer then runs like any other and its outcome arrives by callback.",
            body="RequestToPayDecisionBody", params=("payee_participant_id", "request_id"),
            responses=_accepted("request_to_pay_decision")),
    },
    "/participant": {
        "get": _operation(
            "whoami", "The participant your API key belongs to",
            "Its id (the scope of your transfer ids and the first segment of your status "
            "paths), name, status and currencies. The SDK calls it on connect.",
            responses={"200": {"description": "You.", **_json("ParticipantView")},
                       "404": _error("PAYER_NOT_FOUND: the key's participant is not "
                                     "registered in the core.")}),
    },
    "/health": {
        "get": _operation(
            "health", "Whether the switch takes requests", "No authentication.",
            public=True,
            responses={"200": {"description": "Taking requests.", **_json("Health")},
                       "503": {"description": "Starting or draining.", **_json("Health")}}),
    },
    "/openapi.json": {
        "get": _operation(
            "openapi", "This document", "No authentication.", public=True,
            responses={"200": {"description": "The OpenAPI 3.1 document.",
                               "content": {"application/json": {"schema": {"type": "object"}}}}}),
    },
    "/docs": {
        "get": _operation(
            "docs", "This API as a web page", "No authentication.", public=True,
            responses={"200": {"description": "HTML.",
                               "content": {"text/html": {"schema": {"type": "string"}}}}}),
    },
}

_WEBHOOK = {
    "post": {
        "operationId": "callback",
        "summary": "Every message the switch sends you, at your registered callback URL",
        "description": (
            "POST <callback_url> with one JSON message; its `type` says which: "
            "`credit_request` (answer with PUT /transfers/{payer}/{id}), `transfer_outcome` "
            "(final state; as payee credit your customer only on COMMITTED), `refused` (the "
            "request was not acted on), `request_to_pay_notice`, `request_to_pay_outcome`, "
            "`error`. Answer 2xx as soon as the message is stored; do the work afterwards. "
            "Failures (no connection, timeout, 408, 429, 5xx) are retried with exponential "
            "back-off and jitter; another 4xx is not retried. The same message may arrive "
            "more than once: handle it idempotently by its ids. Signed with the switch's "
            "key in `X-Jws-Signature` when the switch has one."),
        "requestBody": {"required": True, **_json("Outbound")},
        "responses": {"200": {"description": "Stored."},
                      "204": {"description": "Stored."}},
    }
}

_SCHEMA_TYPES = (TransferRequest, ReturnRequest, RequestToPay, PayeeAnswerBody,
                 RequestToPayDecisionBody, AliasRegistration, AliasAnswer, ResolveAnswer,
                 TransferOutcome, Accepted, Health, ErrorBody, ParticipantView, Outbound)


def build_document(server_url: str = "/") -> dict:
    """The whole OpenAPI 3.1 document as a dict (encode once, serve the bytes)."""
    schemas, components = msgspec.json.schema_components(_SCHEMA_TYPES, ref_template=REF)
    components["Outbound"] = schemas[-1]
    for name in _REQUEST_TAGGED:
        schema = components[name]
        schema["required"] = [field for field in schema["required"] if field != "type"]
    result_lines = "\n".join(
        f"- `{int(member)}` {member.name} (HTTP {http_status(member)}): {DESCRIPTIONS[member]}"
        for member in Result)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ponte connector API (HTTP/JSON)",
            "version": "1.0.0",
            "description": (
                "What a bank or wallet speaks to the Ponte switch over HTTP. Money is an "
                "integer of minor units. Authenticate with `Authorization: Bearer <api key>` "
                "or `X-Api-Key`. Bodies may carry a detached JWS signature (required for "
                "participants registered as signing). Asynchronous operations answer 202 "
                "and deliver their outcome to your callback URL (see webhooks).\n\n"
                "Every error body is `ErrorBody`; `result` is one of:\n\n" + result_lines),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": PATHS,
        "webhooks": {"callback": _WEBHOOK},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "The participant's API key."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    }


def _schema_html(name: str, schema: dict) -> str:
    rows = []
    required = set(schema.get("required", ()))
    for field, spec in schema.get("properties", {}).items():
        if "$ref" in spec:
            kind = spec["$ref"].rsplit("/", 1)[1]
        elif "anyOf" in spec:
            kind = " | ".join(part.get("$ref", "").rsplit("/", 1)[-1] or part.get("type", "?")
                              for part in spec["anyOf"])
        else:
            kind = str(spec.get("type", spec.get("enum", "")))
        bounds = ", ".join(f"{key} {spec[key]}" for key in
                           ("minimum", "maximum", "minLength", "maxLength", "pattern")
                           if key in spec)
        rows.append(f"<tr><td><code>{html.escape(field)}</code></td><td>{html.escape(kind)}"
                    f"</td><td>{'yes' if field in required else ''}</td>"
                    f"<td>{html.escape(bounds)}</td></tr>")
    description = html.escape(schema.get("description", ""))
    table = ("<table><tr><th>field</th><th>type</th><th>required</th><th>bounds</th></tr>"
             + "".join(rows) + "</table>") if rows else ""
    enum = f"<p>values: <code>{html.escape(str(schema['enum']))}</code></p>" \
        if "enum" in schema else ""
    return f'<h3 id="{html.escape(name)}">{html.escape(name)}</h3><p>{description}</p>' \
           f"{enum}{table}"


def render_docs(document: dict) -> str:
    """A static HTML page of the document: paths, webhooks, schemas. No script, no CDN."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Ponte connector API</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "code{background:#f3f3f3}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:.2em .5em;text-align:left}</style></head><body>",
        f"<h1>{html.escape(document['info']['title'])}</h1>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
        "<h2>Operations</h2>",
    ]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get(
                "application/json", {}).get("schema", {}).get("$ref", "")
            body_name = body.rsplit("/", 1)[-1] if body else ""
            statuses = ", ".join(sorted(operation["responses"]))
            parts.append(
                f"<h3><code>{method.upper()} {html.escape(path)}</code></h3>"
                f"<p><b>{html.escape(operation['summary'])}</b>. "
                f"{html.escape(operation['description'])}</p>"
                + (f"<p>body: <a href='#{body_name}'>{body_name}</a></p>" if body_name else "")
                + f"<p>answers: {statuses}</p>")
    parts.append("<h2>Callbacks (webhooks)</h2>")
    for name, hook in document["webhooks"].items():
        description = html.escape(hook["post"]["description"])
        parts.append(f"<h3>{html.escape(name)}</h3><p>{description}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in sorted(document["components"]["schemas"].items()):
        parts.append(_schema_html(name, schema))
    parts.append("</body></html>")
    return "".join(parts)
