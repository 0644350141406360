"""Real traffic for the console tests: a real `SwitchServer` (file journal in a temp dir,
stream listener on a free port) with participants driven by the SDK's `StreamClient`.

Nothing here is a stand-in: the switch decides, journals and releases every transfer; the
participants are SDK clients over TCP that register aliases, send transfers and answer
credit requests. Used by the browser suite (in a thread of its own, see `SwitchThread`).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

from connectors.sdk import ACCEPT
from connectors.sdk.stream_client import StreamClient
from switch.core.messages import Party, TransferRequest
from switch.core.results import SettlementModel
from switch.server.config import load_config
from switch.core.messages import AliasRegistration
from switch.admin.bootstrap import add_currency, add_participant
from switch.app import start_switch
from switch.server.server import SwitchServer

S = 1_000_000_000
BANKS = ("bank-a", "bank-b", "wallet-c")
FUNDING_MINOR = 50_000_000  # 500,000.00 BRL each


def cpf(seed: int) -> str:
    """A valid Brazilian CPF (the directory's default national ID) from a seed."""
    digits = [int(c) for c in f"{(seed * 7919 + 123456789) % 10**9:09d}"]
    if len(set(digits)) == 1:
        digits[0] = (digits[0] + 1) % 10
    for length in (9, 10):
        total = sum(d * w for d, w in zip(digits, range(length + 1, 1, -1)))
        check = total * 10 % 11
        digits.append(0 if check == 10 else check)
    return "".join(map(str, digits))


def msisdn(participant_index: int, customer: int) -> str:
    return f"+55119{participant_index}{customer:06d}"


class Traffic:
    """Participants on a running server and a paced sender between them."""

    def __init__(self, server: SwitchServer, customers: int = 20):
        self.server = server
        self.customers = customers
        self.clients: dict[str, StreamClient] = {}
        self.participant_ids: dict[str, int] = {}
        self.outcomes: list[object] = []
        self.sent = 0
        self._ids = itertools.count(1)
        self._running: asyncio.Task | None = None

    async def onboard(self) -> None:
        await add_currency(self.server, "BRL", 986, SettlementModel.PREFUNDED_RTGS)
        for index, name in enumerate(BANKS):
            created = await add_participant(self.server, name,
                                            "wallet" if name.startswith("wallet") else "bank",
                                            ["BRL"], funding_minor=FUNDING_MINOR)
            self.participant_ids[name] = created.participant_id
            client = await StreamClient.connect("127.0.0.1", self.server.stream_port,
                                                api_key=created.api_key,
                                                on_credit_request=lambda _request: ACCEPT)
            self.clients[name] = client
            rows = [AliasRegistration(alias_type="MSISDN", alias_value=msisdn(index, c),
                                      account_ref=f"acc-{index}-{c}",
                                      owner_national_id=cpf(index * 1000 + c),
                                      display_name=f"Customer {index} {c}")
                    for c in range(self.customers)]
            answer = await client.register_aliases(rows)
            assert answer.registered == len(rows), answer

    def transfer(self, payer: str, payee_index: int, amount_minor: int,
                 end_to_end_id: str = "") -> tuple[str, asyncio.Future]:
        transfer_id = f"t{next(self._ids)}"
        request = TransferRequest(
            transfer_id=transfer_id,
            payee=Party(alias_type="MSISDN", alias_value=msisdn(payee_index, 0)),
            amount_minor=amount_minor, currency="BRL",
            expires_at_ns=time.time_ns() + 30 * S, end_to_end_id=end_to_end_id,
            payer_user_ref=f"user-{payer}-{transfer_id}",
        )
        self.sent += 1
        future = self.clients[payer].submit_transfer(request)

        def keep(done: asyncio.Future) -> None:
            if not done.cancelled():  # cancelled: the client closed at the end of a test
                self.outcomes.append(done.exception() or done.result())

        future.add_done_callback(keep)
        return transfer_id, future

    async def run(self, per_s: float) -> None:
        """Send A->B, B->C, C->A in turn at `per_s` until cancelled."""
        pairs = itertools.cycle([("bank-a", 1), ("bank-b", 2), ("wallet-c", 0)])
        interval_s = 1.0 / per_s
        while True:
            payer, payee = next(pairs)
            if self.clients[payer].protocol_error is None:  # a suspended one's session ended
                self.transfer(payer, payee, 1_00)
            await asyncio.sleep(interval_s)

    async def reconnect(self, name: str) -> None:
        """A new session for `name` after the switch ended its old one (a suspension):
        a new key, the same payee behaviour."""
        participant_id = self.participant_ids[name]
        api_key = await self.server.credentials.issue_key(participant_id)
        old = self.clients[name]
        self.clients[name] = await StreamClient.connect(
            "127.0.0.1", self.server.stream_port, api_key=api_key,
            on_credit_request=lambda _request: ACCEPT)
        await old.close()

    def start(self, per_s: float) -> None:
        self.stop()
        self._running = asyncio.ensure_future(self.run(per_s))

    def stop(self) -> None:
        if self._running is not None:
            self._running.cancel()
            self._running = None

    async def close(self) -> None:
        self.stop()
        for client in self.clients.values():
            await client.close()


async def start_server(data_dir: str) -> SwitchServer:
    config = load_config(environ={}, data_dir=data_dir, stream_port=0, admin_enabled=False)
    server = await start_switch(config)
    return server


class SwitchThread:
    """The switch, its console and the traffic in a loop on a thread of their own, so a
    synchronous browser driver (Playwright) can run in the test's thread. `call(coro)`
    runs a coroutine on that loop and waits for its result."""

    def __init__(self, data_dir: str, passwords=None):
        self.data_dir = data_dir
        self.passwords = passwords
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="switch-loop",
                                       daemon=True)
        self.thread.start()
        self.server: SwitchServer | None = None
        self.console = None
        self.traffic: Traffic | None = None

    def call(self, coroutine, timeout_s: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def send(self, payer: str, payee_index: int, amount_minor: int = 1_00,
             end_to_end_id: str = "", timeout_s: float = 15) -> tuple[str, object]:
        """One transfer from the test's thread: (transfer id, its final answer)."""
        async def send():
            transfer_id, future = self.traffic.transfer(payer, payee_index, amount_minor,
                                                        end_to_end_id)
            return transfer_id, await asyncio.wait_for(future, timeout_s)
        return self.call(send(), timeout_s + 5)

    def start(self) -> None:
        async def start():
            from switch.console.server_port import attach_console

            self.server = await start_server(self.data_dir)
            self.traffic = Traffic(self.server)
            await self.traffic.onboard()
            self.console = await attach_console(self.server, passwords=self.passwords)
        self.call(start())

    def stop(self) -> None:
        async def stop():
            if self.traffic is not None:
                await self.traffic.close()
            if self.console is not None:
                await self.console.stop()
            if self.server is not None:
                await self.server.stop(drain_s=2)
        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
