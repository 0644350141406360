"""Real processes, real sockets: payments succeed, are rejected, time out and are returned;
every simulator's books reconcile exactly with the switch's ledger."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.sim.population import Population, load_profile
from e2e_helpers import PROFILE, RULES_FAST_TIMEOUT, assert_books_reconcile
from connectors.sdk.stream_client import StreamClient
from switch.core.messages import Party, TransferRequest
from switch.core.results import Result, TransferState

pytestmark = pytest.mark.slow


def test_outcomes_of_every_kind_and_books_reconcile(rig):
    switch = rig.switch()
    credentials = rig.onboard(switch, rules=RULES_FAST_TIMEOUT)
    sims = rig.sims(switch, credentials, tps=300, seconds=4,
                    options={"reject_rate": 0.05, "silence_rate": 0.04, "return_rate": 0.1,
                             "answer_latency_ms": 1.0, "expiry_s": 20.0})
    ready = sims.wait_for("ready", 120)
    for participant in ready["participants"].values():
        assert participant["aliases"]["rejected"] == 0
        assert participant["aliases"]["registered"] > 0
    final = sims.wait_for("final", 120)
    results = final["results"]
    assert results.get("COMMITTED", 0) > 0
    assert results.get("REJECTED", 0) > 0  # payee rejected
    assert results.get("EXPIRED", 0) > 0  # payee silent past the 400 ms timeout
    assert final["returns_sent"] > 0  # payees returned some payments
    assert "LOST" not in results
    assert not any(name.startswith("REFUSED_") for name in results), results
    assert final["done"] == final["sent"]
    assert_books_reconcile(switch, final)
    metrics = switch.get("/metrics")
    assert 'ponte_transfers_total{state="EXPIRED",result="TRANSFER_EXPIRED"}' in metrics
    assert 'ponte_transfers_total{state="REJECTED",result="PAYEE_REJECTED"}' in metrics


def test_a_status_query_and_a_duplicate_see_the_same_outcome(rig):
    switch = rig.switch()
    credentials = rig.onboard(switch)
    sims = rig.sims(switch, {k: v for k, v in credentials.items() if k != "bank_a"},
                    tps=1, seconds=0.5)
    sims.wait_for("ready", 120)
    population = Population.build(load_profile(PROFILE), 1)
    customer = next(c for c in population.customers("wallet_a")
                    if any(a.kind.value == "MSISDN" for a in c.aliases))
    alias = Party(alias_type="MSISDN", alias_value=next(
        a.value for a in customer.aliases if a.kind.value == "MSISDN"))

    async def scenario():
        payer = await StreamClient.connect("127.0.0.1", switch.stream_port,
                                           api_key=credentials["bank_a"]["api_key"])
        found = await payer.resolve(alias.alias_type, alias.alias_value, "p1")
        request = TransferRequest(transfer_id="e2e-dup", payee=alias, amount_minor=1234,
                                  currency="KES", expires_at_ns=time.time_ns() + 20 * 10**9,
                                  payer_user_ref="p1", payer_account_ref="p1")
        first = await payer.transfer(request, timeout_s=20)
        again = await payer.transfer(request, timeout_s=20)
        status = await payer.status(payer.participant_id, "e2e-dup")
        await payer.close()
        return found, first, again, status

    found, first, again, status = asyncio.run(scenario())
    assert found.result is Result.OK
    assert first.state is TransferState.COMMITTED
    assert again == first == status
    account = switch.positions()[credentials["bank_a"]["participant_id"]]["accounts"]["KES"]
    assert account["debits_posted"] == 1234  # one payment, whatever was resent
    sims.wait_for("final", 60)


def test_unknown_alias_and_bad_amounts_are_refused_without_a_trace(rig):
    switch = rig.switch()
    credentials = rig.onboard(switch)

    async def scenario():
        payer = await StreamClient.connect("127.0.0.1", switch.stream_port,
                                           api_key=credentials["bank_a"]["api_key"])
        nobody = TransferRequest(transfer_id="e2e-nobody",
                                 payee=Party(alias_type="MSISDN", alias_value="+254711111111"),
                                 amount_minor=10, currency="KES",
                                 expires_at_ns=time.time_ns() + 10**10, payer_user_ref="p1")
        refused = await payer.transfer(nobody, timeout_s=10)
        status = await payer.status(payer.participant_id, "e2e-nobody")
        await payer.close()
        return refused, status

    refused, status = asyncio.run(scenario())
    assert refused.result is Result.PARTY_NOT_FOUND
    assert status.result is Result.TRANSFER_NOT_FOUND
    for row in switch.get("/admin/participants"):
        assert row["accounts"]["KES"]["debits_posted"] == 0
        assert row["accounts"]["KES"]["debits_pending"] == 0
