"""`ponte bench fspiop`: full FSPIOP payments per second through the hub, JWS off and on.

The switch (durable file journal, fdatasync per group commit) runs in this process with the
FSPIOP hub on; a second process plays the DFSPs with `connectors.fspiop.dfsp.Dfsp` — payer
and payee DFSPs, pipelined on keep-alive connections — because the Node adapter would be the
bottleneck. A payment is the whole FSPIOP conversation: GET /parties and its PUT, POST
/quotes and its PUT, POST /transfers and its PUT (8 requests through the hub). The run
fails unless the ledger moved exactly what the DFSPs saw committed.
Goal (issue 13): >= 3,000 payments/s and p99 <= 250 ms on the 2-core box.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

import click

from switch.launcher import free_port

PAYEE_MSISDN = "254700000001"
AMOUNT_MINOR = 100


async def _driver(config: dict) -> dict:
    from connectors.fspiop.dfsp import Dfsp

    payees = []
    for index, entry in enumerate(config["payees"]):
        dfsp = Dfsp(entry["fsp_id"], config["hub_url"], entry["api_key"],
                    entry["key"].encode() if entry["key"] else None,
                    parties={("MSISDN", config["msisdn"][index]): "Alice A."})
        await dfsp.start(entry["port"])
        payees.append(dfsp)
    payers = []
    for entry in config["payers"]:
        dfsp = Dfsp(entry["fsp_id"], config["hub_url"], entry["api_key"],
                    entry["key"].encode() if entry["key"] else None)
        await dfsp.start(entry["port"])
        payers.append(dfsp)
    deadline = time.perf_counter() + config["seconds"]
    latencies: list[float] = []
    failures = 0

    async def loop(payer, msisdn) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                fulfil, _ = await payer.pay("MSISDN", msisdn, "1", "KES", timeout_s=30)
                if fulfil.get("transferState") == "COMMITTED":
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1
            except (AssertionError, asyncio.TimeoutError, OSError, KeyError):
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(payers[i % len(payers)], config["msisdn"][i % len(payees)])
                           for i in range(config["concurrency"])))
    elapsed = time.perf_counter() - started
    for dfsp in payers + payees:
        await dfsp.close()
    latencies.sort()

    def percentile(fraction: float) -> float:
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000 \
            if latencies else 0.0

    return {"payments": len(latencies), "failures": failures, "seconds": round(elapsed, 3),
            "payments_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(0.50), 1), "p99_ms": round(percentile(0.99), 1)}


async def _run(seconds: float, concurrency: int, jws: bool) -> dict:
    from connectors.fspiop.app import FspiopParticipant
    from switch.testing import onboard, start_test_server

    with tempfile.TemporaryDirectory(prefix="ponte-bench-fspiop-") as folder:
        keys: dict[str, tuple[str, str]] = {}
        hub_key = ""
        if jws:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            def pair() -> tuple[str, str]:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                return (key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode(),
                        key.public_key().public_bytes(
                            serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode())
            hub_key = os.path.join(folder, "hub.pem")
            with open(hub_key, "w") as file:
                file.write(pair()[0])
            keys = {name: pair() for name in ("payer1", "payer2", "payee1", "payee2")}
        server = await start_test_server(os.path.join(folder, "data"), fspiop_enabled=True,
                                         fspiop={"port": 0, "signing_key_path": hub_key})
        try:
            banks = await onboard(server, ["payer1", "payer2", "payee1", "payee2"])
            connector = server.fspiop_connector
            config = {"hub_url": f"http://127.0.0.1:{connector.port}", "seconds": seconds,
                      "concurrency": concurrency, "payers": [], "payees": [], "msisdn": []}
            for name, (participant_id, api_key) in banks.items():
                port = free_port()
                private, public = keys.get(name, ("", ""))
                connector.set_participant(FspiopParticipant(
                    participant_id=participant_id, fsp_id=name,
                    endpoint=f"http://127.0.0.1:{port}", public_key_pem=public))
                role = "payees" if name.startswith("payee") else "payers"
                config[role].append({"fsp_id": name, "api_key": api_key, "key": private,
                                     "port": port})
                if role == "payees":
                    msisdn = f"25470000000{len(config['msisdn']) + 1}"
                    config["msisdn"].append(msisdn)
                    answer = await server.gateway.register_alias(
                        participant_id, alias_type="MSISDN", alias_value="+" + msisdn,
                        account_ref="acc", owner_national_id=f"123456789{len(config['msisdn'])}",
                        display_name="Alice Andrade")
                    assert answer.result.name == "OK", answer
            before = server.core.ledger.totals()
            path = os.path.join(folder, "driver.json")
            with open(path, "w") as file:
                json.dump(config, file)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.fspiop_bench", "--driver", path,
                stdout=subprocess.PIPE)
            out, _ = await process.communicate()
            if process.returncode != 0:
                raise click.ClickException("the DFSP driver failed")
            result = json.loads(out)
            await asyncio.sleep(0.5)
            after = server.core.ledger.totals()
            moved = after[1] - before[1]
            # Each committed payment posts its amount once (no scheme fee configured here).
            result["ledger_posted_minor"] = moved
            result["books_match"] = moved == result["payments"] * AMOUNT_MINOR
            result["jws"] = jws
            return result
        finally:
            await server.stop(drain_s=0)


@click.command("fspiop")
@click.option("--seconds", type=click.FloatRange(1, 600), default=10.0, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 5000), default=400, show_default=True,
              help="Payments in flight at once (pipelined).")
@click.option("--quick", is_flag=True, help="A few seconds at low concurrency: a smoke run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fspiop_command(seconds: float, concurrency: int, quick: bool, as_json: bool) -> None:
    """Full FSPIOP payments (lookup + quote + transfer + fulfil) per second and p50/p99,
    JWS off and on, against the hub with a durable journal."""
    if quick:
        seconds, concurrency = 2.0, 20
    results = [asyncio.run(_run(seconds, concurrency, jws)) for jws in (False, True)]
    failed = [r for r in results if not r["books_match"] or not r["payments"]]
    if as_json:
        click.echo(json.dumps({"bench": "fspiop", "seconds": seconds,
                               "concurrency": concurrency, "runs": results}))
    else:
        for r in results:
            click.echo(f"jws={'on ' if r['jws'] else 'off'} {r['payments_per_s']:>8.1f} "
                       f"payments/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
                       f"failures {r['failures']}  books {'ok' if r['books_match'] else 'DIFFER'}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--driver":
        import uvloop

        with open(sys.argv[2]) as file:
            driver_config = json.load(file)
        print(json.dumps(uvloop.run(_driver(driver_config))))
    else:
        fspiop_command()
