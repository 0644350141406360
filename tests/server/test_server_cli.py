"""`ponte admin ...`, `ponte participant ...` and `ponte currency add` against a real switch
process's console (maker-checker, two operators), and the refusal to run with asserts
stripped."""

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
from switch.launcher import AdminError, SwitchProcess, sim_server_config

pytestmark = pytest.mark.slow


async def connects(port: int, api_key: str) -> int | None:
    try:
        client = await StreamClient.connect("127.0.0.1", port, api_key=api_key,
                                            reconnect=False)
    except SdkError:
        return None
    await client.close()
    return client.participant_id


PASSWORD = "correct horse battery staple"


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _proposal_id(output: str) -> str:
    (proposal_id,) = re.findall(r"proposed (p-[0-9a-f]{16})", output)
    return proposal_id


def test_onboarding_commands_go_through_maker_checker(tmp_path):
    config = sim_server_config(str(tmp_path / "data"))
    with SwitchProcess(config) as switch:
        runner = CliRunner()
        maker = ["--session-file", str(tmp_path / "maker.json")]
        checker = ["--session-file", str(tmp_path / "checker.json")]
        for name in ("root", "second"):
            _ok(runner.invoke(main, ["admin", "create-user", "--data-dir", switch.data_dir,
                                     "--username", name, "--password-stdin"],
                              input=PASSWORD + "\n"))
        # Not logged in yet: a clear refusal, non-zero.
        result = runner.invoke(main, ["participant", "list", *maker])
        assert result.exit_code != 0 and "ponte admin login" in result.output
        for name, session in (("root", maker), ("second", checker)):
            output = _ok(runner.invoke(main, ["admin", "login", "--url", switch.console_url,
                                              "--username", name, "--password-stdin",
                                              *session], input=PASSWORD + "\n"))
            assert PASSWORD not in output
        assert oct(os.stat(tmp_path / "maker.json").st_mode & 0o777) == "0o600"

        proposal = _proposal_id(_ok(runner.invoke(main, [
            "currency", "add", "KES", "--ledger-id", "404", "--fee-fixed-minor", "1", *maker])))
        # The maker may not check their own proposal.
        result = runner.invoke(main, ["admin", "approve", proposal, *maker])
        assert result.exit_code != 0 and "CHECKER_MUST_DIFFER" in result.output
        assert f"{proposal} executed" in _ok(runner.invoke(main, ["admin", "approve", proposal,
                                                                   *checker]))

        output = _ok(runner.invoke(main, ["participant", "add", "bank_z", "--kind", "bank",
                                          "--currency", "KES", "--funding-minor", "5000",
                                          *maker]))
        proposal = _proposal_id(output)
        assert switch.positions() == {}  # nothing before the approval
        listed = _ok(runner.invoke(main, ["admin", "proposals", *checker]))
        assert proposal in listed and "onboard" in listed
        output = _ok(runner.invoke(main, ["admin", "approve", proposal, *checker]))
        assert "participant_id=1" in output
        (api_key,) = re.findall(r"api_key=(\S+)", output)
        assert api_key.startswith("ponte_")
        assert asyncio.run(connects(switch.stream_port, api_key)) == 1
        (row,) = json.loads(_ok(runner.invoke(main, ["participant", "list", "--json", *maker])))
        assert row["name"] == "bank_z" and row["positions"][0]["limit_minor"] == 5000

        # A key rotation: proposed by one admin, its key printed to the other, once.
        proposal = _proposal_id(_ok(runner.invoke(main, ["participant", "key", "1", *checker])))
        output = _ok(runner.invoke(main, ["admin", "approve", proposal, *maker]))
        (new_key,) = re.findall(r"api_key=(\S+)", output)
        assert asyncio.run(connects(switch.stream_port, new_key)) == 1
        assert asyncio.run(connects(switch.stream_port, api_key)) is None  # revoked

        # Funding: proposed, rejected, nothing moves; proposed, approved, it moves.
        proposal = _proposal_id(_ok(runner.invoke(main, [
            "participant", "fund", "1", "--currency", "KES", "--amount-minor", "700", *maker])))
        assert "rejected" in _ok(runner.invoke(main, ["admin", "reject", proposal, *checker]))
        assert switch.positions()[1]["accounts"]["KES"]["credits_posted"] == 5000
        proposal = _proposal_id(_ok(runner.invoke(main, [
            "participant", "fund", "1", "--currency", "KES", "--amount-minor", "700", *maker])))
        _ok(runner.invoke(main, ["admin", "approve", proposal, *checker]))
        assert switch.positions()[1]["accounts"]["KES"]["credits_posted"] == 5700

        # Refusals are typed, exit non-zero and change nothing.
        result = runner.invoke(main, ["participant", "add", "bank_q", "--kind", "bank",
                                      "--currency", "XYZ", *maker])
        assert result.exit_code != 0 and "ADMIN_CURRENCY_NOT_FOUND" in result.output
        result = runner.invoke(main, ["participant", "category", "1", "NOPE", *maker])
        assert result.exit_code != 0 and "VALIDATION_ERROR" in result.output
        assert [r["name"] for r in switch.request("GET", "/admin/participants")] == ["bank_z"]
        # The small port changes nothing any more, whatever the token.
        with pytest.raises(AdminError) as refused:
            switch.post("/admin/participants", {"name": "x", "kind": "bank",
                                                "currencies": ["KES"]})
        assert refused.value.status == 405

        _ok(runner.invoke(main, ["admin", "logout", *maker]))
        assert not (tmp_path / "maker.json").exists()


def test_every_operator_command_is_documented_in_help():
    runner = CliRunner()
    for group, commands in (
            ("admin", ["login", "logout", "proposals", "approve", "reject", "create-user",
                       "verify-audit"]),
            ("participant", ["add", "list", "categories", "fund", "defund", "net-debit-cap",
                             "daily-limit", "account", "callback-url", "certificate",
                             "category", "key", "suspend", "resume"]),
            ("currency", ["add"])):
        output = _ok(runner.invoke(main, [group, "--help"]))
        for command in commands:
            assert re.search(rf"^  {command}\s", output, re.MULTILINE), (group, command)
            assert _ok(runner.invoke(main, [group, command, "--help"])).count("Usage:") == 1


def test_refuses_to_run_with_asserts_stripped(tmp_path):
    config = sim_server_config(str(tmp_path))
    path = tmp_path / "switch.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, "-O", "-m", "switch.server", "run", "--config",
                             str(path)], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ))
    assert result.returncode != 0
    assert "allow_optimized_python" in result.stderr + result.stdout


def test_a_standby_needs_the_journal_and_stores_in_postgresql(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--standby", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2  # a usage error, before anything starts
    assert "role = 'standby'" in result.output and "journal = 'postgres'" in result.output
    assert not os.path.exists(tmp_path / "switch.journal")
    assert "--standby" in _ok(runner.invoke(main, ["run", "--help"]))
