"""`ponte directory import`: CSV in, registrations in the embedded store, refusals by row."""

from __future__ import annotations

import asyncio
import csv

from click.testing import CliRunner

from directory_helpers import SECRET, cpf, msisdn
from switch.cli import main
from switch.store.embedded import EmbeddedDirectoryStore

HEADER = ["alias_type", "alias_value", "participant_id", "account_ref", "owner_national_id",
          "owner_kind", "display_name"]


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


def test_import_registers_good_rows_and_reports_bad_ones_by_number(tmp_path):
    rows = [["MSISDN", msisdn(n), "bank-a", f"acc-{n}", cpf(n), "PERSON", "John Doe"]
            for n in range(30)]
    rows.append(["RANDOM", "", "bank-a", "acc-r", cpf(1), "1", "John Doe"])
    rows.append(["FAX", "+5511999", "bank-a", "acc-x", cpf(2), "PERSON", "J D"])
    rows.append(["NATIONAL_ID", "529.982.247-26", "bank-a", "acc-y", "52998224726", "PERSON",
                 "J D"])
    source, store_path, rejects = tmp_path / "in.csv", tmp_path / "dir.sqlite3", tmp_path / "r"
    write_csv(source, rows)
    result = CliRunner().invoke(
        main, ["directory", "import", str(source), "--embedded", str(store_path),
               "--rejects", str(rejects)],
        env={"PONTE_DIRECTORY_SECRET": SECRET.decode()},
    )
    assert result.exit_code == 1, result.output  # some rows were refused
    assert "rows 33  registered 31  already registered 0  refused 2" in result.output
    assert "row 32: FIELD_TYPE_UNKNOWN field=alias_type" in result.output
    assert "row 33: FIELD_CHECKSUM_INVALID field=alias_value" in result.output
    assert "52998224726" not in result.output
    assert rejects.read_text().splitlines() == [
        "row,result,field", "32,FIELD_TYPE_UNKNOWN,alias_type",
        "33,FIELD_CHECKSUM_INVALID,alias_value"]
    store = EmbeddedDirectoryStore(str(store_path))
    assert asyncio.run(store.alias_count()) == 31
    asyncio.run(store.close())
    # Importing the same file again changes nothing and says so.
    again = CliRunner().invoke(
        main, ["directory", "import", str(source), "--embedded", str(store_path), "--quiet"],
        env={"PONTE_DIRECTORY_SECRET": SECRET.decode()},
    )
    assert "registered 1  already registered 30  refused 2" in again.output  # +1 RANDOM


def test_import_refuses_to_run_without_a_secret_or_a_header(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("alias_type,alias_value\nMSISDN,+5511987654321\n")
    store_path = tmp_path / "dir.sqlite3"
    no_secret = CliRunner().invoke(main, ["directory", "import", str(source), "--embedded",
                                          str(store_path)], env={"PONTE_DIRECTORY_SECRET": ""})
    assert no_secret.exit_code == 2 and "PONTE_DIRECTORY_SECRET" in no_secret.output
    no_header = CliRunner().invoke(main, ["directory", "import", str(source), "--embedded",
                                          str(store_path)],
                                   env={"PONTE_DIRECTORY_SECRET": SECRET.decode()})
    assert no_header.exit_code == 2 and "participant_id" in no_header.output
