"""`ponte bench soak`: hold a flat offered rate for a set time against a real switch and say
whether throughput, p99 latency and the switch's memory stayed flat.

It starts a rig (switch + payee simulators, bench/locust/rig.py), offers the population's
payments open-loop through one transport (bench/locust/driver.py), evenly spaced at exactly
the soak's rate as the switch sees it (on-us payments never reach it), samples the switch's
CPU and RSS every second, and writes a report folder (report.json, report.md, plots) whose
summary carries `bench.report.flatness_verdict` over every second but the last (whose late
completions land after the run). `--json` prints that same summary. A soak shorter than
the verdict's warm-up plus its minimum samples answers TOO_FEW_SAMPLES: honest, not flat.
The switch keeps its recent transfers for idempotency up to a bound, so its RSS grows until
that table is full: a soak shorter than that fill time may rightly answer RSS_GREW.

It must never judge anything but what it measured, and never leave a process running.
"""

from __future__ import annotations

import json
import math
import os
import time

import click
import msgspec

from bench.locust import limits
from connectors.sim.population import FlatRate, Profile, ProfileError, load_profile
from bench.report import FlatnessTolerances, flatness_verdict
from bench.run_report import default_report_dir, finish_run

QUICK_SECONDS = 20.0
QUICK_RATE_PER_S = 200.0
QUICK_WARMUP_S = 5.0
QUICK_SAMPLES_MIN = 10


def soak_profile(profile: Profile, *, seconds: float | None, rate_per_s: float | None) -> Profile:
    """The profile turned into a soak: a flat rate (the profile's own if it is flat, else
    `rate_per_s`, which then is required) for `seconds` (default: the profile's duration),
    evenly spaced."""
    if rate_per_s is None:
        if not isinstance(profile.rate, FlatRate):
            raise ValueError(f"profile {profile.name!r} has no flat rate: give --rate")
        rate_per_s = profile.rate.rate_per_s
    if not 0.0 < rate_per_s <= limits.RATE_PER_S_MAX:
        raise ValueError(f"the rate must be in (0, {limits.RATE_PER_S_MAX}] per second")
    duration_s = profile.duration_s if seconds is None else seconds
    if not 0.0 < duration_s <= limits.RUN_SECONDS_MAX:
        raise ValueError(f"seconds must be in (0, {limits.RUN_SECONDS_MAX}]")
    # Evenly spaced arrivals: the offered rate is then exactly flat, so a drift in what
    # completes is the system's, not Poisson noise (which on a short soak alone moves the
    # fitted throughput line by more than the 5 % tolerance).
    return msgspec.structs.replace(
        profile, rate=FlatRate(rate_per_s=rate_per_s), duration_s=max(1, math.ceil(duration_s)),
        spike=None, arrivals="even")


def _verdict_figures(verdict) -> dict:
    def trend(t):
        if t is None:
            return None
        return {"mean": t.mean, "slope_per_s": t.slope_per_s,
                "change_over_run": t.change_over_run, "change_ratio": t.change_ratio,
                "tolerance_ratio": t.tolerance_ratio, "within_tolerance": t.within_tolerance,
                "samples": t.samples}

    return {
        "result": verdict.result.name,
        "flat": verdict.flat,
        "failures": [f.name for f in verdict.failures],
        "span_s": verdict.span_s,
        "throughput": trend(verdict.throughput),
        "latency_p99": trend(verdict.latency_p99),
        "rss": trend(verdict.rss),
    }


def run_soak(*, profile: Profile, seconds: float, transport: str, seed: int,
             tolerances: FlatnessTolerances, report_dir: str, on_tick=None,
             work_dir: str | None = None) -> tuple[dict, object]:
    """Run a soak and write its report folder; (summary as in report.json, ReportFiles)."""
    from bench.locust.driver import DriverOptions, run_session
    from bench.locust.plan import Plan, retime
    from connectors.sim.population import Population

    options = DriverOptions(transport=transport, seed=seed)
    rate_per_s = profile.rate.rate_per_s
    plan = Plan(Population.build(profile, seed))
    payments = retime(plan.payments, rate_per_s)
    run_tag = f"soak{seed}x{time.time_ns() // 1_000_000 % 10**10}"
    result = run_session(profile, options, seconds=seconds, run_tag=run_tag, payments=payments,
                         on_tick=on_tick, work_dir=work_dir)
    samples = result.samples
    # The last second is left out of the verdict: transfers offered at its end complete
    # after the run, so its completed count is short by design, not by drift.
    verdict = flatness_verdict(samples[:-1] if len(samples) > 1 else samples, tolerances)
    summary = {
        "kind": "soak",
        "profile": profile.name,
        "seed": seed,
        "seconds": seconds,
        # Transfers per second offered to the switch (on-us payments are not part of it).
        "offered_rate_per_s": rate_per_s,
    }
    summary.update(result.figures())
    summary["flatness"] = _verdict_figures(verdict)
    summary["tolerances"] = msgspec.to_builtins(tolerances)
    title = (f"Ponte soak: {profile.rate.rate_per_s:g}/s for {seconds:g} s over "
             f"{transport} — {verdict.result.name}")
    return finish_run(report_dir, samples, summary, title)


def _progress_printer(console, seconds: float):
    def on_tick(session) -> None:
        series = session.series
        console.print(
            f"t={session.elapsed_s():6.1f}/{seconds:g}s offered={series.offered_total} "
            f"completed={series.completed_total} ok={series.outcomes_total.get('OK', 0)} "
            f"in_flight={session.driver.in_flight}", highlight=False)
    return on_tick


@click.command("soak")
@click.option("--profile", "profile_name", default="soak", show_default=True,
              help="connectors/sim/profiles name or TOML path.")
@click.option("--seconds", type=float, default=None, help="Run length [the profile's].")
@click.option("--rate", "rate_per_s", type=float, default=None,
              help="Offered payments per second [the profile's flat rate].")
@click.option("--transport", type=click.Choice(["stream", "http"]), default="stream",
              show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--warmup-s", type=float, default=None,
              help="Seconds left out of the flatness fit [30; 5 with --quick].")
@click.option("--samples-min", type=int, default=None,
              help="Seconds needed after warm-up for a verdict [30; 10 with --quick].")
@click.option("--quick", is_flag=True,
              help=f"{QUICK_SECONDS:g} s at {QUICK_RATE_PER_S:g}/s unless told otherwise.")
@click.option("--report-dir", default=None, help="Report folder [reports/soak-<time>/].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def soak_command(profile_name, seconds, rate_per_s, transport, seed, warmup_s, samples_min,
                 quick, report_dir, as_json) -> None:
    """Hold a flat rate for a set time; report whether throughput, p99 and memory stayed flat."""
    from rich.console import Console

    console = Console(stderr=True)
    if quick:
        seconds = QUICK_SECONDS if seconds is None else seconds
        rate_per_s = QUICK_RATE_PER_S if rate_per_s is None else rate_per_s
        warmup_s = QUICK_WARMUP_S if warmup_s is None else warmup_s
        samples_min = QUICK_SAMPLES_MIN if samples_min is None else samples_min
    defaults = FlatnessTolerances()
    try:
        profile = soak_profile(load_profile(profile_name), seconds=seconds,
                               rate_per_s=rate_per_s)
        tolerances = FlatnessTolerances(
            warmup_s=defaults.warmup_s if warmup_s is None else warmup_s,
            samples_min=defaults.samples_min if samples_min is None else samples_min)
        tolerances = msgspec.convert(msgspec.to_builtins(tolerances), FlatnessTolerances)
    except (ProfileError, ValueError, msgspec.ValidationError) as error:
        raise click.UsageError(str(error)) from None
    seconds = float(profile.duration_s) if seconds is None else seconds
    folder = report_dir or default_report_dir("soak")
    console.print(f"soak: {profile.rate.rate_per_s:g}/s for {seconds:g} s over {transport} "
                  f"(profile {profile.name}, seed {seed}); starting the switch and payees...")
    summary, files = run_soak(profile=profile, seconds=seconds, transport=transport, seed=seed,
                              tolerances=tolerances, report_dir=folder,
                              on_tick=_progress_printer(console, seconds))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        flat = summary["flatness"]
        click.echo(f"soak {flat['result']}: committed {summary['committed_per_s']:.1f}/s of "
                   f"{summary['offered_rate_per_s']:g}/s offered, transfer p99 "
                   f"{summary['transfer_latency_p99_ms']} ms, success "
                   f"{summary['success_ratio']:.4f}")
    console.print(f"report: {os.path.abspath(files.folder)}")
