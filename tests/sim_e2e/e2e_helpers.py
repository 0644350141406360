"""Shared pieces of the end-to-end tests (a plain module: importing `conftest` by name picks
whichever conftest was imported first when the whole suite runs)."""

from __future__ import annotations

import asyncio
import os
import time

import msgspec

from connectors.sdk.stream_client import StreamClient
from connectors.sim.books import BooksReport, reconcile
from connectors.sim.population import Population, load_profile
from switch.core.messages import Party, TransferRequest
from switch.launcher import SwitchProcess

PROFILE = os.path.join(os.path.dirname(__file__), "small.toml")
NAMES_KINDS = [("bank_a", "bank"), ("bank_b", "bank"), ("wallet_a", "wallet"),
               ("wallet_b", "wallet")]
FUNDING_MINOR = 10**14
RULES_FAST_TIMEOUT = {"payee_timeout_ms": 400}


def assert_books_reconcile(switch: SwitchProcess, final: dict) -> None:
    positions = switch.positions()
    differences = []
    for books in final["books"]:
        report = msgspec.convert(books, BooksReport)
        assert report.in_flight_out == 0, report
        differences.extend(reconcile(report, positions[report.participant_id]["accounts"]["KES"]))
    assert differences == []


def payee_aliases(count: int) -> list[Party]:
    """The first `count` MSISDN aliases of the profile's wallet_a customers."""
    population = Population.build(load_profile(PROFILE), 1)
    aliases = []
    for customer in population.customers("wallet_a"):
        for alias in customer.aliases:
            if alias.kind.value == "MSISDN":
                aliases.append(Party(alias_type="MSISDN", alias_value=alias.value))
        if len(aliases) == count:
            return aliases
    return aliases


async def pay_and_collect(ports: int | list[int], api_key: str, aliases: list[Party],
                          prefix: str):
    """One payment to each alias, pipelined; (payer id, outcomes). Several ports: the
    SDK's fallback addresses (a standby)."""
    ports = [ports] if isinstance(ports, int) else ports
    client = await StreamClient.connect(
        "127.0.0.1", ports[0], api_key=api_key,
        fallback_addresses=[("127.0.0.1", port) for port in ports[1:]])
    futures = [client.submit_transfer(TransferRequest(
        transfer_id=f"{prefix}-{i}", payee=alias, amount_minor=100 + i, currency="KES",
        expires_at_ns=time.time_ns() + 30 * 10**9, payer_user_ref=f"t{i}"))
        for i, alias in enumerate(aliases)]
    outcomes = await asyncio.wait_for(asyncio.gather(*futures), 60)
    participant_id = client.participant_id
    await client.close()
    return participant_id, outcomes


async def statuses(port: int, api_key: str, participant_id: int, transfer_ids: list[str]):
    client = await StreamClient.connect("127.0.0.1", port, api_key=api_key)
    answers = [await client.status(participant_id, transfer_id) for transfer_id in transfer_ids]
    await client.close()
    return answers
