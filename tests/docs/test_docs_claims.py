"""What the docs say the code does, checked against the code: the core's worked example
(docs/core.md) gives the outcome the core really gives, and the directory page's table of
what reaches the directory through the switch (docs/directory.md) names exactly the
directory methods the gateway calls."""

from __future__ import annotations

import re
from pathlib import Path

import ledger
from switch.core import CoreConfig, SwitchCore
from switch.core.messages import (
    CurrencyAdded,
    FundsDeposited,
    ParticipantAccountOpened,
    ParticipantAdded,
    Party,
    PayeeAnswer,
    PayeeAnswered,
    SchemeRules,
    Send,
    TransferOutcome,
    TransferRequest,
    TransferRequested,
)
from switch.core.results import SettlementModel

ROOT = Path(__file__).resolve().parents[2]


def test_core_example_outcome_is_what_the_core_answers():
    page = (ROOT / "docs" / "core.md").read_text()
    example = page[page.index("## Example"):page.index("## A transfer's states")]
    documented_fee = int(re.search(r"fee_minor=(\d+)", example).group(1))
    now_ns = 1_767_268_800_000_000_000
    core = SwitchCore(CoreConfig(), ledger.Ledger())
    core.step(CurrencyAdded(request_id="c", currency="BRL", ledger_id=986,
                            settlement_model=SettlementModel.PREFUNDED_RTGS,
                            rules=SchemeRules()), now_ns)
    for participant_id in (1, 2):
        core.step(ParticipantAdded(request_id=f"p{participant_id}",
                                   participant_id=participant_id, name=f"p{participant_id}"),
                  now_ns)
        core.step(ParticipantAccountOpened(request_id=f"a{participant_id}",
                                           participant_id=participant_id, currency="BRL"),
                  now_ns)
        core.step(FundsDeposited(request_id=f"f{participant_id}", participant_id=participant_id,
                                 currency="BRL", amount_minor=10**9), now_ns)
    core.step(TransferRequested(
        payer_participant_id=1, payee_participant_id=2, payee_account_ref="acc-9",
        request=TransferRequest(transfer_id="7f0c", payee=Party(
            alias_type="MSISDN", alias_value="+5511999990000"), amount_minor=5_000,
            currency="BRL", expires_at_ns=now_ns + 60 * 10**9, payer_user_ref="u1")), now_ns)
    commands = core.step(PayeeAnswered(payee_participant_id=2, answer=PayeeAnswer(
        payer_participant_id=1, transfer_id="7f0c", accepted=True)), now_ns + 3_000_000)
    kinds = [type(command).__name__ for command in commands]
    assert kinds == ["CancelTimer", "Send", "Send", "RefundLookupToken"]
    outcome = commands[1].message
    assert type(commands[1]) is Send and type(outcome) is TransferOutcome
    assert outcome.fee_minor == documented_fee


def _gateway_directory_calls() -> set[str]:
    source = (ROOT / "switch" / "server" / "gateway.py").read_text()
    return set(re.findall(r"self\._directory\.(\w+)\(", source))


def test_directory_page_names_the_methods_the_switch_calls():
    page = (ROOT / "docs" / "directory.md").read_text()
    section = page[page.index("## Through the switch"):page.index("## Aliases and their")]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    documented = {method for row in rows
                  for method in re.findall(r"`([a-z_]+)`", row.split("|")[-2])}
    assert documented == _gateway_directory_calls()
    unreachable = set(re.findall(r"`(\w+)`", section.split("not reachable")[0].split("\n\n")[-1]))
    assert unreachable and not unreachable & _gateway_directory_calls()
