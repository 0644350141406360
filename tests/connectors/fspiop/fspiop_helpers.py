"""Shared pieces of the FSPIOP tests: RSA keys, a switch with the FSPIOP hub on, DFSPs
registered on it, and the independent OpenAPI check of what the hub sends."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from openapi_schema_validator import OAS30Validator

from connectors.fspiop.app import FspiopParticipant
from connectors.fspiop.dfsp import Dfsp
from switch.core.messages import SchemeRules
from switch.testing import onboard, start_test_server

SPEC = Path(__file__).resolve().parents[3] / "connectors" / "fspiop" / "fspiop-1.1-openapi3.yaml"
PAYEE_MSISDN = "254700000001"  # Mojaloop writes MSISDNs without "+"
OTHER_MSISDN = "254700000002"
PAYEE_NATIONAL_ID = "1234567890"  # SIM_DIRECTORY: Kenya, 10 digits


def rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@functools.lru_cache(maxsize=1)
def raw_spec() -> dict:
    with open(SPEC) as file:
        return yaml.safe_load(file)


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if ref is None:
        return node
    target = raw_spec()
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return target


def check_against_spec(method: str, path: str, headers: dict, body: bytes) -> None:
    """What the hub sent must be an operation of the spec, with the header parameters it
    requires and a body valid against the operation's schema (openapi-schema-validator on
    the spec's own yaml, not our Structs)."""
    import json
    import re

    document = raw_spec()
    found = None
    for template, item in document["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", r"[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            found = (item, item[method.lower()])
            break
    assert found is not None, f"{method} {path} is not an operation of the spec"
    item, operation = found
    names = {name.decode() if isinstance(name, bytes) else name for name in headers}
    for parameters in (item.get("parameters", []), operation.get("parameters", [])):
        for parameter in map(_resolve, parameters):
            # Accept: the SDK sends none on PUT, and the spec lists it on GET/POST only.
            if parameter["in"] == "header" and parameter.get("required"):
                assert parameter["name"].lower() in names, \
                    f"{method} {path}: no {parameter['name']}"
    if method in ("GET", "DELETE"):
        assert not body
        return
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    OAS30Validator({**schema, "components": document["components"]}).validate(json.loads(body))


async def hub(tmp_path, *, rules: SchemeRules | None = None, server: dict | None = None,
              **fspiop):
    """A switch with the FSPIOP hub on (hub key RS256) and three funded banks; `server`:
    more ServerConfig fields (the console, the HTTP connector...)."""
    hub_private, hub_public = rsa_pair()
    key_path = tmp_path / "hub.pem"
    key_path.write_bytes(hub_private)
    server = await start_test_server(str(tmp_path / "data"), fspiop_enabled=True, fspiop={
        "port": 0, "hub_fsp_id": "ponte", "signing_key_path": str(key_path), **fspiop},
        **(server or {}))
    banks = await onboard(server, ["payerfsp", "payeefsp", "streambank"], rules=rules)
    return server, banks, hub_public


async def python_dfsps(server, banks, **payee_options) -> tuple[Dfsp, Dfsp]:
    """The two banks as Python DFSPs, registered on the hub with their keys, the payee
    holding PAYEE_MSISDN in the directory."""
    connector = server.fspiop_connector
    url = f"http://127.0.0.1:{connector.port}"
    dfsps = []
    for name, options in (("payerfsp", {}), ("payeefsp", payee_options)):
        participant_id, api_key = banks[name]
        private, public = rsa_pair()
        dfsp = Dfsp(name, url, api_key, private, parties={
            ("MSISDN", PAYEE_MSISDN): "Alice A."}, **options)
        endpoint = await dfsp.start()
        connector.set_participant(FspiopParticipant(
            participant_id=participant_id, fsp_id=name, endpoint=endpoint,
            public_key_pem=public.decode()))
        dfsps.append(dfsp)
    await register_payee(server, banks["payeefsp"][0], "+" + PAYEE_MSISDN)
    return dfsps[0], dfsps[1]


async def register_payee(server, participant_id: int, msisdn: str,
                         national_id: str = PAYEE_NATIONAL_ID) -> None:
    answer = await server.gateway.register_alias(
        participant_id, alias_type="MSISDN", alias_value=msisdn, account_ref="acc-1",
        owner_national_id=national_id, display_name="Alice Andrade")
    assert answer.result.name == "OK", answer


def balances(server, banks) -> dict[str, int]:
    core = server.core
    accounts = server.core.ledger.lookup_accounts(
        [core.account_id(banks[name][0], "KES") for name in banks])
    return {name: a.credits_posted - a.debits_posted - a.debits_pending
            for name, a in zip(banks, accounts)}


def pending_total(server) -> int:
    """Debits still reserved in the ledger (0 once every transfer is final)."""
    return server.core.ledger.totals()[0]
