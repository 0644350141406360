"""The OpenAPI document: a valid OpenAPI 3.1 document, every route the connector serves is
in it and nothing else, and its schemas are the ones the connector decodes."""

from __future__ import annotations

import msgspec
from openapi_spec_validator import validate

from connectors.http.app import ROUTES
from connectors.http.openapi import PATHS, build_document, render_docs
from switch.core.messages import TransferRequest


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
