"""The work `ponte bench instructions` counts, run by path (never imported) under valgrind.

    python bench/instructions_harness.py core CASE fee|nofee N
    python bench/instructions_harness.py switch N [config_key=value ...]

`core`: `bench.core_bench.measure(CASE, "compiled", fee, N, 1)`, the core's work per
transfer. `switch`: a real server in this process (`start_test_server`: journal file, SQLite
directory, stream sockets; tuned like the `ponte run` process: GIL interval, collector) and, in a child process, two stream SDK clients: the payer and
an auto-accepting payee; N payments by alias, 64 in flight, every one checked COMMITTED.
The child is started by exec, which valgrind does not follow, so the count is the
switch's work alone (what `ponte bench e2e` reports as the switch's CPU).

It is run with PYTHONPATH set to the code being measured, which may be an older checkout
(a git worktree of the code before a change): so it uses only public entry points, and
finds the two that moved in issue 17 (`start_test_server`, `AliasRegistration`) in either
place. It prints one line, `done N`, and exits non-zero on any failure.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

# Run by path, Python puts this folder first on sys.path, where `locust/` and `limits.py`
# would shadow packages of those names: the code measured comes from PYTHONPATH only.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

IN_FLIGHT = 64
PAYEE_ALIAS = "+254700000001"


def run_core(case: str, fee: str, transfers: int) -> None:
    from bench.core_bench import measure

    measure(case, "compiled", fee == "fee", transfers, 1)


async def serve(payments: int, overrides: dict) -> None:
    """The switch in this process; the clients in a child process started by exec, which
    valgrind does not follow (no --trace-children): the count is the switch's alone."""
    try:
        from switch.testing import onboard, start_test_server
    except ImportError:  # before issue 17
        from switch.server.testing import onboard, start_test_server

    with tempfile.TemporaryDirectory() as data_dir:
        server = await start_test_server(data_dir, **overrides)
        try:  # the process-wide settings `ponte run` applies (GIL interval, collector)
            from switch.app import tune_process
        except ImportError:  # before issue 17 the server's start() applied them itself
            pass
        else:
            tune_process(server)
        try:
            keys = await onboard(server, ["bank_a", "bank_b"])
            clients = await asyncio.create_subprocess_exec(
                sys.executable, os.path.abspath(__file__), "clients", str(payments),
                str(server.stream_port), keys["bank_a"][1], keys["bank_b"][1],
                stdout=asyncio.subprocess.PIPE)
            output, _ = await clients.communicate()
            assert clients.returncode == 0 and output.split() == [b"paid", str(
                payments).encode()], (clients.returncode, output)
        finally:
            await server.stop(drain_s=0)


async def pay(payments: int, port: int, payer_key: str, payee_key: str) -> None:
    """The payer and an auto-accepting payee (stream SDK): an alias, then `payments`
    payments to it, 64 in flight, every one checked COMMITTED."""
    try:
        from switch.core.messages import AliasRegistration
    except ImportError:  # before issue 17
        from switch.server.gateway import AliasRegistration
    from connectors.sdk import Decision
    from connectors.sdk.stream_client import StreamClient
    from switch.core.messages import Party, TransferRequest

    payee = await StreamClient.connect("127.0.0.1", port, api_key=payee_key,
                                       on_credit_request=lambda _: Decision(True))
    payer = await StreamClient.connect("127.0.0.1", port, api_key=payer_key,
                                       on_credit_request=lambda _: Decision(True))
    alias = Party(alias_type="MSISDN", alias_value=PAYEE_ALIAS)
    answer = await payee.register_aliases([AliasRegistration(
        alias_type="MSISDN", alias_value=PAYEE_ALIAS, account_ref="acc-1",
        owner_national_id="1234567890", display_name="Jane Doe")])
    assert answer.registered == 1, answer
    for start in range(0, payments, IN_FLIGHT):
        outcomes = await asyncio.gather(*[payer.submit_transfer(TransferRequest(
            transfer_id=f"t{index}", payee=alias, amount_minor=100, currency="KES",
            expires_at_ns=time.time_ns() + 50 * 10**9, payer_user_ref=f"u{index % 50}"))
            for index in range(start, min(payments, start + IN_FLIGHT))])
        for outcome in outcomes:
            state = getattr(outcome, "state", None)
            assert getattr(state, "name", None) == "COMMITTED", outcome
    await payer.close()
    await payee.close()
    print(f"paid {payments}")


def config_value(text: str):
    return {"true": True, "false": False}.get(text, text)


def main(argv: list[str]) -> None:
    import uvloop

    if argv[0] == "clients":  # the child `serve` starts: not counted, prints its own line
        uvloop.run(pay(int(argv[1]), int(argv[2]), argv[3], argv[4]))
        return
    if argv[0] == "core":
        case, fee, count = argv[1], argv[2], int(argv[3])
        run_core(case, fee, count)
    else:
        assert argv[0] == "switch", argv
        count = int(argv[1])
        overrides = dict(item.split("=", 1) for item in argv[2:])
        uvloop.run(serve(count, {key: config_value(value)
                                 for key, value in overrides.items()}))
    print(f"done {count}")


if __name__ == "__main__":
    main(sys.argv[1:])
