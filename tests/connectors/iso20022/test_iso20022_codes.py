"""The reason-code table: every Result a bank can be told has an ISO code, codes from banks
travel through in the reason, and docs/result-codes.md carries the column."""

from pathlib import Path

from connectors.iso20022.codes import (
    NAMES,
    NOT_SENT_TO_BANKS,
    REASONS,
    reason_for,
    reason_text,
    result_codes_markdown,
    result_for,
)
from switch.core.results import Result

ROOT = Path(__file__).resolve().parents[3]


def test_every_result_a_bank_can_see_has_a_code_in_declaration_order():
    for member in Result:
        if member is Result.OK or member in NOT_SENT_TO_BANKS:
            continue
        code = reason_for(member)
        assert code in NAMES, member
        # And the code means, read back, a result of its own row.
        rows = [results for row_code, _, results in REASONS if row_code == code]
        assert member in rows[0] or member is Result.PAYEE_REJECTED


def test_named_codes_map_both_ways():
    assert reason_for(Result.PAYER_INSUFFICIENT_LIQUIDITY) == "AM04"
    assert reason_for(Result.AMOUNT_ABOVE_TRANSFER_MAX) == "AM02"
    assert reason_for(Result.RETURN_EXCEEDS_ORIGINAL) == "AM09"
    assert reason_for(Result.EXISTS_WITH_DIFFERENT_AMOUNT) == "DUPL"
    assert reason_for(Result.VALIDATION_ERROR) == "FF01"
    assert reason_for(Result.TRANSFER_EXPIRED) == "AB05"
    assert reason_for(Result.PAYEE_BLOCKED) == "AC06"
    assert reason_for(Result.PARTY_NOT_FOUND) == "AC01"
    for code in ("AC01", "AC03", "AC04", "AC06", "AG01", "AM02", "AM04", "AM09", "BE01",
                 "DUPL", "FF01", "RR04", "TM01"):
        assert code in NAMES
        assert isinstance(result_for(code), Result)
    assert result_for("AM04") is Result.PAYER_INSUFFICIENT_LIQUIDITY
    assert result_for("ZZ99") is Result.PAYEE_REJECTED


def test_a_bank_code_travels_in_the_reason():
    reason = reason_text("RR04", "sanctions screening")
    assert reason == "RR04 sanctions screening"
    assert reason_for(Result.PAYEE_REJECTED, reason) == "RR04"
    assert reason_for(Result.PAYEE_REJECTED, "free text") == "MS03"
    # Only a bank's refusal carries its own code; the switch's results keep theirs.
    assert reason_for(Result.TRANSFER_EXPIRED, "AC04 whatever") == "AB05"


def test_result_codes_doc_has_the_iso_column():
    text = (ROOT / "docs" / "result-codes.md").read_text()
    assert text == result_codes_markdown()
    assert "| ISO 20022 |" in text
    assert "| 4001 | `PAYER_INSUFFICIENT_LIQUIDITY` |" in text
    assert "`AM04` |" in text


def test_iso20022_doc_lists_every_row_of_the_table():
    # docs/iso20022.md copies the one table by hand; it once lacked FULFILMENT_INVALID
    # (FF01) and RETURN_WINDOW_CLOSED (TM01).
    text = (ROOT / "docs" / "iso20022.md").read_text()
    for code, name, results in REASONS:
        row = f"| `{code}` | {name} | " + ", ".join(f"`{r.name}`" for r in results) + " |"
        assert row in text, row
