"""`ponte sim ...` / `python -m connectors.sim ...`: run simulated banks and wallets.

Only parses options into a RunConfig and starts the runner; it must never print an API key.
"""

from __future__ import annotations

import click
import msgspec


@click.group()
def sim() -> None:
    """Simulated banks and wallets (customers, aliases, answers, traffic, books)."""


@sim.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="A RunConfig as JSON (connectors/sim/runner.py); options override it.")
@click.option("--host", default=None, help="Switch stream host [127.0.0.1].")
@click.option("--port", type=int, default=None, help="Switch stream port [7400].")
@click.option("--participant", "participants", multiple=True, metavar="NAME=API_KEY",
              help="A participant to host (its population name and API key); repeat.")
@click.option("--profile", default=None, help="connectors/sim/profiles name or TOML path [quick].")
@click.option("--seed", type=int, default=None)
@click.option("--tps", type=float, default=None, help="Offered payments per second, all hosted payers.")
@click.option("--seconds", type=float, default=None)
@click.option("--reject-rate", type=float, default=None)
@click.option("--silence-rate", type=float, default=None, help="Share of credit requests never answered.")
@click.option("--return-rate", type=float, default=None)
@click.option("--latency-ms", type=float, default=None, help="Mean answer latency.")
@click.option("--no-register", is_flag=True, help="Skip alias registration.")
def run(config_path, host, port, participants, profile, seed, tps, seconds, reject_rate,
        silence_rate, return_rate, latency_ms, no_register) -> None:
    """Host participants, register their aliases, offer traffic, print JSON lines."""
    import uvloop

    from connectors.sim.runner import RunConfig, run_process

    data: dict = {}
    if config_path:
        with open(config_path, "rb") as file:
            data = msgspec.json.decode(file.read())
    if participants:
        data["participants"] = []
        for item in participants:
            name, _, key = item.partition("=")
            if not name or not key:
                raise click.BadParameter(f"expected NAME=API_KEY, got {item!r}")
            data["participants"].append({"name": name, "api_key": key})
    for key, value in (("host", host), ("port", port), ("profile", profile), ("seed", seed),
                       ("tps", tps), ("seconds", seconds)):
        if value is not None:
            data[key] = value
    if no_register:
        data["register"] = False
    options = data.setdefault("options", {})
    for key, value in (("reject_rate", reject_rate), ("silence_rate", silence_rate),
                       ("return_rate", return_rate), ("answer_latency_ms", latency_ms)):
        if value is not None:
            options[key] = value
    data.setdefault("port", 7400)
    try:
        config = msgspec.convert(data, RunConfig)
    except msgspec.ValidationError as error:
        raise click.UsageError(f"bad simulator configuration: {error}") from None
    if not config.participants:
        raise click.UsageError("host at least one --participant NAME=API_KEY")
    uvloop.run(run_process(config))
