"""The FSPIOP listener with mutual TLS (`fspiop.tls_cert`, `tls_key`, `tls_client_ca`): a DFSP
presenting a certificate of the scheme's CA is served; one with no certificate, or with one
of another CA, never gets past the handshake; plain HTTP gets nothing."""

from __future__ import annotations

import ssl

import httpx
import pytest
from click.testing import CliRunner
from fspiop_helpers import hub
from pki_helpers import Pki

from switch.cli import main as ponte
from switch.testing import start_test_server


@pytest.fixture
async def mtls_hub(tmp_path):
    pki = Pki(tmp_path, ("switch", "payerfsp"))
    server, _banks, _hub_public = await hub(
        tmp_path, tls_cert=pki.path("switch"), tls_key=pki.path("switch"),
        tls_client_ca=pki.ca)
    try:
        yield server, pki
    finally:
        await server.stop(drain_s=0)


async def test_a_dfsp_with_the_schemes_certificate_is_served(mtls_hub):
    server, pki = mtls_hub
    url = f"https://127.0.0.1:{server.fspiop_connector.port}/openapi.yaml"
    async with httpx.AsyncClient(verify=pki.client("payerfsp")) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")


@pytest.mark.parametrize("certificate", [None, "foreign"])
async def test_no_certificate_or_another_cas_gets_no_answer(mtls_hub, certificate):
    server, pki = mtls_hub
    url = f"https://127.0.0.1:{server.fspiop_connector.port}/openapi.yaml"
    async with httpx.AsyncClient(verify=pki.client(certificate)) as client:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError,
                            ssl.SSLError)):
            response = await client.get(url)
            # TLS 1.3: the server's refusal of the certificate may arrive after the
            # handshake, as an alert instead of a response.
            pytest.fail(f"served without a valid client certificate: {response.status_code}")


async def test_plain_http_on_the_tls_listener_gets_no_answer(mtls_hub):
    server, _pki = mtls_hub
    url = f"http://127.0.0.1:{server.fspiop_connector.port}/openapi.yaml"
    async with httpx.AsyncClient() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
            await client.get(url)


HALF_TLS = [
    ({"tls_cert": "server.pem"}, "tls_cert and tls_key go together"),
    ({"tls_client_ca": "ca.pem"}, "tls_client_ca needs tls_cert/tls_key"),
]


@pytest.mark.parametrize("fields, message", HALF_TLS)
async def test_half_a_tls_configuration_stops_the_start_before_anything_opens(
        tmp_path, fields, message):
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match=rf"^\[fspiop\] .*{message}"):
        await start_test_server(str(data_dir), fspiop_enabled=True,
                                fspiop={"port": 0, "hub_fsp_id": "ponte", **fields})
    assert not data_dir.exists()  # no journal, no store: nothing was opened


@pytest.mark.parametrize("fields, message", HALF_TLS)
def test_ponte_run_refuses_half_a_tls_configuration_with_a_usage_error(
        tmp_path, fields, message):
    config = tmp_path / "ponte.toml"
    config.write_text("fspiop_enabled = true\n[fspiop]\n" + "".join(
        f'{key} = "{value}"\n' for key, value in fields.items()))
    outcome = CliRunner().invoke(ponte, ["run", "--config", str(config),
                                         "--data-dir", str(tmp_path / "data")])
    assert outcome.exit_code == 2, outcome.output
    assert "configuration: [fspiop]" in outcome.output and message in outcome.output
    assert not (tmp_path / "data").exists()
