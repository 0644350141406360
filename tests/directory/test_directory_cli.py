"""`ponte directory import`: CSV in, registrations in the store the switch reads (its data
directory's SQLite file with its own directory secret, or its PostgreSQL store), refusals
by row. The switch is real: started on the data directory before and after the import."""

from __future__ import annotations

import asyncio
import csv
import os

import pytest
from click.testing import CliRunner

from directory_helpers import SECRET, cpf, msisdn
from switch.cli import main
from switch.core.messages import Party, ResolveRequest
from switch.core.results import Result
from switch.server.config import load_config
from switch.app import start_switch
from switch.store.embedded import EmbeddedDirectoryStore

HEADER = ["alias_type", "alias_value", "participant_id", "account_ref", "owner_national_id",
          "owner_kind", "display_name"]
NO_SECRET = {"PONTE_DIRECTORY_SECRET": ""}


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


def server_config(data_dir, postgres_dsn=None):
    extra = {"store": "postgres", "postgres_dsn": postgres_dsn} if postgres_dsn else {}
    return load_config(None, environ={}, data_dir=str(data_dir), stream_port=0,
                       admin_port=0, **extra)


async def resolve_through_the_switch(config, aliases: list[Party]) -> list:
    server = await start_switch(config)
    try:
        return [await server.gateway.resolve(7, ResolveRequest(alias=alias,
                                                               payer_user_ref="u"))
                for alias in aliases]
    finally:
        await server.stop(drain_s=0)


def run_once(config) -> None:
    """Start and stop the switch once: it creates its data directory and secrets."""
    asyncio.run(resolve_through_the_switch(config, []))


@pytest.mark.parametrize("backend", ["embedded", "postgres"])
def test_import_writes_where_the_switch_reads_with_its_secret(tmp_path, request, backend):
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else None
    data_dir = tmp_path / "ponte-data"
    config = server_config(data_dir, dsn)
    run_once(config)
    source = tmp_path / "in.csv"
    write_csv(source, [["MSISDN", msisdn(1), "3", "acc-1", cpf(1), "PERSON", "John Doe"],
                       ["NATIONAL_ID", cpf(2), "3", "acc-2", cpf(2), "PERSON", "Ann Lee"]])
    args = ["directory", "import", str(source), "--data-dir", str(data_dir), "--quiet"]
    if dsn:
        args += ["--postgres-dsn", dsn]
    # Run from elsewhere: nothing may land in the working directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        result = CliRunner().invoke(main, args, env=NO_SECRET)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert "rows 2  registered 2  already registered 0  refused 0" in result.output
    assert list(elsewhere.iterdir()) == []
    answers = asyncio.run(resolve_through_the_switch(config, [
        Party(alias_type="MSISDN", alias_value=msisdn(1)),
        Party(alias_type="NATIONAL_ID", alias_value=cpf(2))]))
    assert [(a.result, a.payee_participant_id, a.payee_account_ref) for a in answers] == [
        (Result.OK, 3, "acc-1"), (Result.OK, 3, "acc-2")]


def test_import_refuses_a_data_dir_the_switch_never_ran_in(tmp_path):
    source = tmp_path / "in.csv"
    write_csv(source, [["MSISDN", msisdn(1), "3", "acc-1", cpf(1), "PERSON", "John Doe"]])
    for data_dir in (tmp_path / "missing", tmp_path):  # no such directory; no secrets.json
        result = CliRunner().invoke(main, ["directory", "import", str(source), "--data-dir",
                                           str(data_dir)], env=NO_SECRET)
        assert result.exit_code == 2, result.output
        assert "secrets.json" in result.output and "ponte run" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv"]


def test_import_refuses_a_store_other_than_the_switchs(tmp_path):
    source = tmp_path / "in.csv"
    write_csv(source, [["MSISDN", msisdn(1), "3", "acc-1", cpf(1), "PERSON", "John Doe"]])
    result = CliRunner().invoke(main, ["directory", "import", str(source), "--embedded",
                                       str(tmp_path / "dir.sqlite3")], env=NO_SECRET)
    assert result.exit_code == 2 and "--embedded" in result.output


def test_import_registers_good_rows_and_reports_bad_ones_by_number(tmp_path):
    data_dir = tmp_path / "ponte-data"
    run_once(server_config(data_dir))
    rows = [["MSISDN", msisdn(n), "1", f"acc-{n}", cpf(n), "PERSON", "John Doe"]
            for n in range(30)]
    rows.append(["RANDOM", "", "1", "acc-r", cpf(1), "1", "John Doe"])
    rows.append(["FAX", "+5511999", "1", "acc-x", cpf(2), "PERSON", "J D"])
    rows.append(["NATIONAL_ID", "529.982.247-26", "1", "acc-y", "52998224726", "PERSON",
                 "J D"])
    rows.append(["MSISDN", msisdn(40), "bank-a", "acc-z", cpf(40), "PERSON", "J D"])
    source, rejects = tmp_path / "in.csv", tmp_path / "r"
    write_csv(source, rows)
    result = CliRunner().invoke(
        main, ["directory", "import", str(source), "--data-dir", str(data_dir),
               "--rejects", str(rejects)], env=NO_SECRET)
    assert result.exit_code == 1, result.output  # some rows were refused
    assert "rows 34  registered 31  already registered 0  refused 3" in result.output
    assert "row 32: FIELD_TYPE_UNKNOWN field=alias_type" in result.output
    assert "row 33: FIELD_CHECKSUM_INVALID field=alias_value" in result.output
    # The switch names participants by number: "bank-a" could never be paid.
    assert "row 34: FIELD_MALFORMED field=participant_id" in result.output
    assert "52998224726" not in result.output
    assert rejects.read_text().splitlines() == [
        "row,result,field", "32,FIELD_TYPE_UNKNOWN,alias_type",
        "33,FIELD_CHECKSUM_INVALID,alias_value", "34,FIELD_MALFORMED,participant_id"]
    store = EmbeddedDirectoryStore(str(data_dir / "directory.sqlite3"))
    assert asyncio.run(store.alias_count()) == 31
    asyncio.run(store.close())
    # Importing the same file again changes nothing and says so.
    again = CliRunner().invoke(
        main, ["directory", "import", str(source), "--data-dir", str(data_dir), "--quiet"],
        env=NO_SECRET)
    assert "registered 1  already registered 30  refused 3" in again.output  # +1 RANDOM


def test_a_configured_secret_is_the_switchs_too(tmp_path):
    # PONTE_DIRECTORY_SECRET is the switch's own setting: the import uses it as the switch
    # does, with or without a secrets.json.
    data_dir = tmp_path / "ponte-data"
    data_dir.mkdir()
    source = tmp_path / "in.csv"
    write_csv(source, [["NATIONAL_ID", cpf(2), "3", "acc-2", cpf(2), "PERSON", "Ann Lee"]])
    env = {"PONTE_DIRECTORY_SECRET": SECRET.decode()}
    result = CliRunner().invoke(main, ["directory", "import", str(source), "--data-dir",
                                       str(data_dir), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    config = load_config(None, environ=env, data_dir=str(data_dir), stream_port=0,
                         admin_port=0)
    (answer,) = asyncio.run(resolve_through_the_switch(config, [
        Party(alias_type="NATIONAL_ID", alias_value=cpf(2))]))
    assert (answer.result, answer.payee_account_ref) == (Result.OK, "acc-2")


def test_import_refuses_to_run_without_a_header(tmp_path):
    data_dir = tmp_path / "ponte-data"
    run_once(server_config(data_dir))
    source = tmp_path / "in.csv"
    source.write_text("alias_type,alias_value\nMSISDN,+5511987654321\n")
    no_header = CliRunner().invoke(main, ["directory", "import", str(source), "--data-dir",
                                          str(data_dir)], env=NO_SECRET)
    assert no_header.exit_code == 2 and "participant_id" in no_header.output
