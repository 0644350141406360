"""The FSPIOP hub with Python DFSPs: a payment end to end, what the hub sends checked
against the spec, and the hub's own checks."""

from __future__ import annotations


import pytest

from connectors.fspiop import ilp
from fspiop_helpers import (
    PAYEE_MSISDN,
    balances,
    check_against_spec,
    hub,
    pending_total,
    python_dfsps,
)

pytestmark = pytest.mark.asyncio


async def _close(server, *dfsps):
    for dfsp in dfsps:
        await dfsp.close()
    await server.stop(drain_s=0)


async def test_payment_end_to_end_with_signatures_forwarded(tmp_path):
    server, banks, _ = await hub(tmp_path)
    payer, payee = await python_dfsps(server, banks)
    try:
        before = balances(server, banks)
        fulfil, _ = await payer.pay("MSISDN", PAYEE_MSISDN, "12.5", "KES")
        assert fulfil["transferState"] == "COMMITTED"
        after = balances(server, banks)
        assert after["payerfsp"] == before["payerfsp"] - 1250
        assert after["payeefsp"] == before["payeefsp"] + 1250
        assert pending_total(server) == 0
        # What the hub sent each DFSP is an operation of the spec with a valid body; the
        # payee's answers reached the payer with the payee's own signature.
        for dfsp in (payer, payee):
            for received in dfsp.received:
                check_against_spec(received.method, received.path, received.headers,
                                   received.body)
        put = [r for r in payer.received if r.method == "PUT" and
               r.path.startswith("/transfers/")][0]
        assert put.headers[b"fspiop-source"] == b"payeefsp"
        assert b"fspiop-signature" in put.headers
        assert ilp.condition_of(fulfil["fulfilment"])
    finally:
        await _close(server, payer, payee)
