"""Validation of Mobile Money API exchanges against the GSMA spec itself
(`../shared/specs/gsma-mobile-money-api-1.1.2.yaml`), with an independent validator:
`openapi-schema-validator` (OpenAPI 3.0 schema dialect, `referencing` for the spec's $refs).

The helper only picks the schema the spec names for an exchange — the operation by method
and path template, its parameters, its request body, its response by status, or a
callback's body — and lets the validator judge. One documented erratum: the spec's
`requestTransactionType` and `responseTransactionType` carry an object-level
`anyOf: [debitPartyArray, creditPartyArray]`, two *array* schemas that no object can
satisfy; its evident meaning (at least one of the two parties) is validated instead.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re

import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "shared", "specs",
                         "gsma-mobile-money-api-1.1.2.yaml")
SPEC_PATH_FALLBACK = "/work/shared/specs/gsma-mobile-money-api-1.1.2.yaml"
URI = "urn:gsma-mm-1.1.2"
_ANY_PARTY = {"anyOf": [{"required": ["debitParty"]}, {"required": ["creditParty"]}],
              "properties": {"debitParty": {"$ref": "#/components/schemas/debitPartyArray"},
                             "creditParty": {"$ref": "#/components/schemas/creditPartyArray"}}}


class SpecViolation(AssertionError):
    pass


@functools.lru_cache(maxsize=1)
def spec() -> dict:
    path = SPEC_PATH if os.path.exists(SPEC_PATH) else SPEC_PATH_FALLBACK
    with open(path) as file:
        document = yaml.safe_load(file)
    document = copy.deepcopy(document)
    schemas = document["components"]["schemas"]
    for name in ("requestTransactionType", "responseTransactionType"):
        schema = schemas[name]
        assert schema["anyOf"] == [{"$ref": "#/components/schemas/debitPartyArray"},
                                   {"$ref": "#/components/schemas/creditPartyArray"}], name
        schema["anyOf"] = _ANY_PARTY["anyOf"]
        schema["properties"].update(_ANY_PARTY["properties"])
    return document


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    return Registry().with_resource(URI, Resource.from_contents(spec(),
                                                                default_specification=DRAFT4))


def _validate(schema: dict, instance, what: str) -> None:
    validator = OAS30Validator({"$ref": f"{URI}#/{_pointer_of(schema)}"}, registry=_registry()) \
        if "$pointer" in schema else OAS30Validator(_absolute(schema), registry=_registry())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        raise SpecViolation(f"{what}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:5]))


def _pointer_of(schema: dict) -> str:
    return schema["$pointer"]


def _absolute(schema):
    """The schema with every local $ref made absolute (pointing into the registered spec)."""
    if isinstance(schema, dict):
        return {key: (URI + value if key == "$ref" and value.startswith("#") else
                      _absolute(value)) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_absolute(value) for value in schema]
    return schema


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        pointer = node["$ref"].lstrip("#/").split("/")
        found = spec()
        for part in pointer:
            found = found[part]
        node = found
    return node


def operation(method: str, path: str) -> tuple[str, dict, dict]:
    """(template, path item, operation) of the spec for a concrete path."""
    path = path.split("?", 1)[0]
    for template, item in spec()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item, item[method.lower()]
    raise SpecViolation(f"{method} {path}: not an operation of the spec")


def _parameters(item: dict, op: dict) -> list[dict]:
    return [_resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]


def validate_request(method: str, path: str, headers: dict, body: bytes | None) -> str:
    """A request against its operation: path and header parameters, the body. The template."""
    template, item, op = operation(method, path)
    names = re.findall(r"\{([^}]+)\}", template)
    values = re.match("^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$",
                      path.split("?", 1)[0]).groups()
    lowered = {(k.decode() if isinstance(k, bytes) else k).lower():
               (v.decode() if isinstance(v, bytes) else v) for k, v in headers.items()}
    for parameter in _parameters(item, op):
        where, name = parameter["in"], parameter["name"]
        if where == "path":
            value = values[names.index(name)]
        elif where == "header":
            value = lowered.get(name.lower())
        else:
            continue
        if value is None:
            if parameter.get("required"):
                raise SpecViolation(f"{method} {template}: {name} is required")
            continue
        _validate(_absolute(parameter["schema"]), value, f"{method} {template} {name}")
    request_body = op.get("requestBody")
    if request_body is not None:
        request_body = _resolve(request_body)
        if body is None or body == b"":
            if request_body.get("required"):
                raise SpecViolation(f"{method} {template}: a body is required")
        else:
            schema = request_body["content"]["application/json"]["schema"]
            _validate(_absolute(schema), json.loads(body), f"{method} {template} body")
    return template


def validate_response(method: str, path: str, status: int, body: bytes) -> str:
    template, _, op = operation(method, path)
    response = op["responses"].get(status) or op["responses"].get(str(status))
    if response is None:
        raise SpecViolation(f"{method} {template}: status {status} is not in the spec")
    content = response.get("content")
    if content is None:
        if body:
            raise SpecViolation(f"{method} {template} {status}: the spec has no body here")
        return template
    _validate(_absolute(content["application/json"]["schema"]), json.loads(body),
              f"{method} {template} {status} body")
    return template


def validate_callback(method: str, path_of_request: str, body: bytes) -> str:
    """A callback Ponte sends for a request to `path_of_request` (`method` of that request):
    its body must be one of the callback bodies the spec defines there. The callback name."""
    template, _, op = operation(method, path_of_request)
    problems = []
    for name, callback in op.get("callbacks", {}).items():
        for expression, item in callback.items():
            request_body = _resolve(item["put"]["requestBody"])
            schema = request_body["content"]["application/json"]["schema"]
            try:
                _validate(_absolute(schema), json.loads(body), f"callback {name}")
                return name
            except SpecViolation as problem:
                problems.append(str(problem))
    raise SpecViolation(f"{method} {template}: no callback of the spec matches: {problems}")


def validate_schema(name: str, instance) -> None:
    _validate({"$ref": f"#/components/schemas/{name}"} and _absolute(
        {"$ref": f"#/components/schemas/{name}"}), instance, name)
