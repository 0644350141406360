"""`ponte participant ...` and `ponte currency add` against a real switch process, and
the refusal to run with asserts stripped."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from connectors.sdk import SdkError
from connectors.sdk.stream_client import StreamClient
from switch.cli import main
from switch.server.launcher import SwitchProcess, sim_server_config

pytestmark = pytest.mark.slow


async def connects(port: int, api_key: str) -> int | None:
    try:
        client = await StreamClient.connect("127.0.0.1", port, api_key=api_key,
                                            reconnect=False)
    except SdkError:
        return None
    await client.close()
    return client.participant_id


def test_onboarding_commands(tmp_path):
    config = sim_server_config(str(tmp_path / "data"))
    with SwitchProcess(config) as switch:
        runner = CliRunner()
        common = ["--admin-url", switch.admin_url, "--data-dir", switch.data_dir]
        result = runner.invoke(main, ["currency", "add", "KES", "--ledger-id", "404", *common])
        assert result.exit_code == 0, result.output
        result = runner.invoke(main, ["participant", "add", "bank_z", "--kind", "bank",
                                      "--currency", "KES", "--funding-minor", "5000", *common])
        assert result.exit_code == 0, result.output
        assert "participant_id=1 name=bank_z" in result.output
        (api_key,) = re.findall(r"api_key=(\S+)", result.output)
        assert api_key.startswith("ponte_")
        result = runner.invoke(main, ["participant", "list", "--json", *common])
        (row,) = json.loads(result.output)
        assert row["name"] == "bank_z" and row["accounts"]["KES"]["credits_posted"] == 5000
        assert asyncio.run(connects(switch.stream_port, api_key)) == 1
        result = runner.invoke(main, ["participant", "key", "1", "--revoke-others", *common])
        assert result.exit_code == 0 and "api_key=ponte_" in result.output
        (new_key,) = re.findall(r"api_key=(\S+)", result.output)
        assert asyncio.run(connects(switch.stream_port, new_key)) == 1
        assert asyncio.run(connects(switch.stream_port, api_key)) is None  # revoked
        # Refusals are typed and change nothing.
        result = runner.invoke(main, ["participant", "add", "bank_q", "--kind", "bank",
                                      "--currency", "XYZ", *common])
        assert result.exit_code != 0 and "ADMIN_CURRENCY_NOT_FOUND" in result.output
        result = runner.invoke(main, ["participant", "list", "--admin-url", switch.admin_url,
                                      "--admin-token", "wrong"])
        assert result.exit_code != 0 and "401" in result.output
        assert [r["name"] for r in switch.request("GET", "/admin/participants")] == ["bank_z"]


def test_refuses_to_run_with_asserts_stripped(tmp_path):
    config = sim_server_config(str(tmp_path))
    path = tmp_path / "switch.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, "-O", "-m", "switch.server", "run", "--config",
                             str(path)], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ))
    assert result.returncode != 0
    assert "allow_optimized_python" in result.stderr + result.stdout
