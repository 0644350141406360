"""Issue 18 item 1: credit requests held across a crash go to the door the payee uses.

A payee with a stream connection AND a callback URL (as the onboarding example shows) holds
transfers unanswered when the switch is killed with SIGKILL. After the restart the switch
re-sends their credit requests; the payee reconnects its stream within a second or two and
must get them there (not at a callback URL it does not serve), answer, and every transfer
must commit."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from connectors.sdk import Decision, RetryPolicy
from connectors.sdk.stream_client import StreamClient
from switch.core.messages import AliasRegistration, CreditRequest, Party, TransferRequest
from switch.core.results import TransferState
from switch.launcher import free_port

pytestmark = pytest.mark.slow

PAYEE_ALIAS = Party(alias_type="MSISDN", alias_value="+254711000001")
TRANSFERS = 30


def test_held_credit_requests_reach_the_payees_stream_after_a_sigkill(rig):
    switch = rig.switch(http_enabled=True, http={"port": free_port()})
    credentials = rig.onboard(switch)
    payer_key = credentials["bank_a"]["api_key"]
    payee = credentials["bank_b"]
    dead_port = free_port()  # nothing listens: the payee does not serve callbacks
    switch.set_callback_url(payee["participant_id"], f"http://127.0.0.1:{dead_port}/callbacks")
    killed = threading.Event()
    restarted = threading.Event()

    async def scenario() -> tuple[list, int, int]:
        held: list[CreditRequest] = []
        after: list[CreditRequest] = []

        def on_credit_request(credit_request: CreditRequest):
            if not killed.is_set():
                held.append(credit_request)
                return None  # hold: no answer before the crash
            after.append(credit_request)
            return Decision(True)

        fast = RetryPolicy(backoff_initial_s=0.05, backoff_max_s=0.3)
        payee_client = await StreamClient.connect(
            "127.0.0.1", switch.stream_port, api_key=payee["api_key"],
            on_credit_request=on_credit_request, retry=fast)
        answer = await payee_client.register_aliases([AliasRegistration(
            alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value, account_ref="acc-1",
            owner_national_id="1234567890", display_name="Jane Doe")])
        assert answer.registered == 1
        payer_client = await StreamClient.connect("127.0.0.1", switch.stream_port,
                                                  api_key=payer_key, retry=fast)
        futures = [payer_client.submit_transfer(TransferRequest(
            transfer_id=f"held-{index}", payee=PAYEE_ALIAS, amount_minor=100 + index,
            currency="KES", expires_at_ns=time.time_ns() + 60 * 10**9,
            payer_user_ref=f"u{index}")) for index in range(TRANSFERS)]
        deadline = time.monotonic() + 20
        while len({c.transfer_id for c in held}) < TRANSFERS:
            assert time.monotonic() < deadline, f"only {len(held)} credit requests arrived"
            await asyncio.sleep(0.02)
        killed.set()
        while not restarted.is_set():
            await asyncio.sleep(0.02)
        outcomes = await asyncio.wait_for(asyncio.gather(*futures), 30)
        await payer_client.close()
        await payee_client.close()
        return outcomes, len({c.transfer_id for c in after}), len(held)

    def crash_and_restart() -> None:
        killed.wait(60)
        switch.kill()
        switch.start()  # same data directory and ports: replay, re-send what was in flight
        restarted.set()

    worker = threading.Thread(target=crash_and_restart, daemon=True)
    worker.start()
    outcomes, resent_on_stream, _held = asyncio.run(scenario())
    worker.join(60)
    states = [outcome.state for outcome in outcomes]
    assert states == [TransferState.COMMITTED] * TRANSFERS, {
        state.name: states.count(state) for state in set(states)}
    assert resent_on_stream == TRANSFERS
