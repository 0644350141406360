"""The OpenAPI document: a valid OpenAPI 3.1 document, every route the connector serves is
in it and nothing else, its schemas are the ones the connector decodes, and every body and
answer has examples that an independent validator (jsonschema) finds valid against the
schema they illustrate. The /docs page renders it, Markdown included, as safe static HTML
that says how to authenticate, which headers to send and what every result code means."""

from __future__ import annotations

import re

import msgspec
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from connectors.http.app import ROUTES
from connectors.http.openapi import PATHS, build_document, markdown_html, render_docs
from connectors.http.resources import PayeeAnswerBody, RequestToPayDecisionBody
from switch.core.messages import (
    AliasRegistration,
    Outbound,
    RequestToPay,
    ReturnRequest,
    TransferRequest,
)
from switch.core.results import DESCRIPTIONS, Result


def test_document_is_valid_openapi_3_1():
    document = build_document("http://127.0.0.1:8080")
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_served_route_is_documented_and_vice_versa():
    served = {(method.lower(), template) for method, template, _ in ROUTES}
    documented = {(method, path) for path, methods in PATHS.items() for method in methods}
    assert served == documented


def test_request_schemas_match_what_the_connector_decodes():
    schemas = build_document()["components"]["schemas"]
    transfer = schemas["TransferRequest"]
    # The tag is optional in a body (the route says what it is); the rest is required.
    assert "type" not in transfer["required"]
    assert {"transfer_id", "amount_minor", "currency", "expires_at_ns"} <= set(
        transfer["required"])
    assert transfer["additionalProperties"] is False
    # The bounds in the document are the bounds the decoder enforces.
    maximum = transfer["properties"]["amount_minor"]["maximum"]
    body = {"transfer_id": "t", "payee": {"alias_type": "MSISDN", "alias_value": "1"},
            "amount_minor": maximum + 1, "currency": "KES", "expires_at_ns": 1}
    try:
        msgspec.json.decode(msgspec.json.encode(body), type=TransferRequest)
    except msgspec.ValidationError as error:
        assert "amount_minor" in str(error)
    else:
        raise AssertionError("an amount above the documented maximum decoded")


def test_every_error_response_uses_the_error_body():
    for path, methods in PATHS.items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/health":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method)


def test_docs_page_lists_every_path_without_scripts():
    page = render_docs(build_document())
    for path in PATHS:
        assert path in page
    assert "<script" not in page
    assert "http://" not in page and "https://" not in page  # nothing loaded from outside


# -- examples ------------------------------------------------------------------------------


def _operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation
    for name, hook in document["webhooks"].items():
        for method, operation in hook.items():
            yield f"webhook {name} {method.upper()}", operation


def _media(operation):
    body = operation.get("requestBody")
    if body is not None:
        for content_type, media in body["content"].items():
            yield f"request {content_type}", media
    for status, response in operation["responses"].items():
        for content_type, media in response.get("content", {}).items():
            yield f"{status} {content_type}", media


def test_every_body_and_answer_has_examples_valid_against_its_schema():
    document = build_document()
    validate(document)
    examples_checked = 0
    for where, operation in _operations(document):
        for what, media in _media(operation):
            examples = media.get("examples")
            assert examples, f"{where}: {what} has no examples"
            # The schema as the root of a document that also holds the components, so
            # its $refs resolve exactly as they do in the OpenAPI document.
            schema = {**media["schema"], "components": document["components"]}
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(schema)
            for name, example in examples.items():
                assert example.get("summary"), (where, what, name)
                errors = sorted(validator.iter_errors(example["value"]), key=str)
                assert not errors, (where, what, name, errors[0].message)
                examples_checked += 1
    assert examples_checked >= 40


_REQUEST_TYPES = {"TransferRequest": TransferRequest, "ReturnRequest": ReturnRequest,
                  "RequestToPay": RequestToPay, "PayeeAnswerBody": PayeeAnswerBody,
                  "RequestToPayDecisionBody": RequestToPayDecisionBody,
                  "AliasRegistration": AliasRegistration, "Outbound": Outbound,
                  "ReconciliationRequest": __import__("switch.core.messages", fromlist=[
                      "ReconciliationRequest"]).ReconciliationRequest}


def test_request_examples_are_what_the_connector_decodes():
    for where, operation in _operations(build_document()):
        body = operation.get("requestBody")
        if body is None:
            continue
        media = body["content"]["application/json"]
        body_type = _REQUEST_TYPES[media["schema"]["$ref"].rsplit("/", 1)[1]]
        for name, example in media["examples"].items():
            encoded = msgspec.json.encode(example["value"])
            msgspec.json.decode(encoded, type=body_type)  # raises if the decoder refuses


def test_error_examples_carry_a_result_their_answer_describes():
    for where, operation in _operations(build_document()):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")) or "content" not in response:
                continue
            for name, example in response["content"]["application/json"]["examples"].items():
                value = example["value"]
                if "accepting" in value:
                    continue  # /health's 503 answers its own Health body
                result = Result(value["result"])
                assert value["name"] == result.name, (where, status, name)
                assert result.name in response["description"], (where, status, name)


# -- the /docs page ------------------------------------------------------------------------


def test_docs_page_says_how_to_authenticate_and_which_headers_to_send():
    page = render_docs(build_document())
    for header in ("Authorization", "Bearer", "X-Api-Key", "Content-Type", "Content-Length",
                   "X-Jws-Signature", "FSPIOP-Signature", "Retry-After"):
        assert header in page, header


def test_docs_page_lists_every_result_code_with_its_status_and_meaning():
    page = render_docs(build_document())
    for member in Result:
        row = re.search(rf"<tr><td>{int(member)}</td><td><code>{member.name}</code></td>"
                        r"<td>(\d{3})</td><td>(.*?)</td></tr>", page)
        assert row is not None, member
        assert row.group(2) == markdown_html(DESCRIPTIONS[member], inline=True), member


def test_docs_page_renders_markdown_instead_of_showing_it():
    page = render_docs(build_document())
    text = re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)  # examples are literal JSON
    assert "`" not in text
    assert re.search(r"\*\*[A-Za-z][^*]*\*\*", text) is None  # bold was rendered, not shown
    assert "\n- " not in text
    assert "<code>transfer_id</code>" in page
    assert "<li>" in page
    assert "<strong>Authentication</strong>" in page


def test_docs_page_shows_every_example():
    document = build_document()
    page = render_docs(document)
    for where, operation in _operations(document):
        for what, media in _media(operation):
            for example in media["examples"].values():
                assert _html_text(example["summary"]) in page, (where, what)


def _html_text(text: str) -> str:
    from html import escape

    return escape(text, quote=False)


@pytest.mark.parametrize("markdown, html", [
    ("plain", "<p>plain</p>"),
    ("a `code` b", "<p>a <code>code</code> b</p>"),
    ("**bold**", "<p><strong>bold</strong></p>"),
    ("one\n\ntwo", "<p>one</p><p>two</p>"),
    ("intro:\n\n- a\n- b `c`", "<p>intro:</p><ul><li>a</li><li>b <code>c</code></li></ul>"),
    ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
    ("`<b>` & **<i>**", "<p><code>&lt;b&gt;</code> &amp; <strong>&lt;i&gt;</strong></p>"),
    ("[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>"),
])
def test_markdown_is_rendered_safely(markdown, html):
    assert markdown_html(markdown) == html
