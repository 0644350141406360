"""`ponte bench step`: raise the offered rate step by step until p99 breaks a bound or the
success ratio drops, and report the highest rate that held — the single number capacity
planners ask for.

It starts a rig (switch + payee simulators), offers the profile's payments open-loop with
evenly spaced arrivals (bench/locust/driver.py), and judges each step as soon as its
payments are final, or `judge_wait_s` after it ended: a payment still open then counts as
not OK and as slower than the bound (its latency is at least `judge_wait_s`, which is at
least twice the bound, so the p99 then is a lower bound and says so). The first step that
breaks stops the offering; `bench.report.sustainable_rate` names the last step before it.
Every step's payments are attributed by their scheduled time, so a backlog carried into the
next step counts against the step that caused it.

Rates: the profile's rate is what the population pays per second; payments between two
customers of one participant (on-us) never reach the switch, so each step also says how
many transfers per second the switch was offered. The report folder and `--json` carry both.

It must never call a rate sustainable that it did not measure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time

import click
import msgspec

from bench.locust import limits
from connectors.sim.population import Profile, ProfileError, StepRate, load_profile
from bench.report import StepSample, sustainable_rate
from bench.run_report import default_report_dir, finish_run
from connectors.sim.latency import LatencyHistogram

QUICK = {"step_s": 5, "steps": 4, "start_rate_per_s": 200.0, "increment_per_s": 200.0}
JUDGE_WAIT_S_MIN = 1.0


def step_profile(profile: Profile, *, step_s: int | None = None, steps: int | None = None,
                 start_rate_per_s: float | None = None,
                 increment_per_s: float | None = None) -> Profile:
    """The profile as a step run: its own StepRate with any value overridden (all four are
    required when the profile's rate is not a step), evenly spaced arrivals, no spike."""
    base = profile.rate if isinstance(profile.rate, StepRate) else None
    values = {
        "step_s": step_s if step_s is not None else (base.step_s if base else None),
        "steps": steps if steps is not None else (base.steps if base else None),
        "start_rate_per_s": start_rate_per_s if start_rate_per_s is not None
        else (base.start_rate_per_s if base else None),
        "increment_per_s": increment_per_s if increment_per_s is not None
        else (base.increment_per_s if base else None),
    }
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ValueError(f"profile {profile.name!r} has no step rate: give "
                         + ", ".join("--" + name.replace("_per_s", "").replace("_", "-")
                                     for name in missing))
    if not 1 <= values["steps"] <= limits.STEPS_MAX:
        raise ValueError(f"steps must be in [1, {limits.STEPS_MAX}]")
    if values["start_rate_per_s"] <= 0 or values["increment_per_s"] <= 0:
        raise ValueError("the start rate and the increment must be above 0")
    top = values["start_rate_per_s"] + (values["steps"] - 1) * values["increment_per_s"]
    if top > limits.RATE_PER_S_MAX:
        raise ValueError(f"the last step would offer {top:g}/s, above {limits.RATE_PER_S_MAX:g}/s")
    if values["steps"] * values["step_s"] > limits.RUN_SECONDS_MAX:
        raise ValueError("the steps last longer than a run may")
    # Through msgspec so the Meta bounds of StepRate and Profile are checked.
    raw = msgspec.to_builtins(profile)
    raw["rate"] = {"kind": "step", **values}
    raw["duration_s"] = values["steps"] * values["step_s"]
    raw["arrivals"] = "even"
    raw.pop("spike", None)
    return msgspec.convert(raw, Profile)


class _Tally:
    __slots__ = ("offered", "finished", "ok", "histogram", "outcomes")

    def __init__(self) -> None:
        self.offered = 0
        self.finished = 0
        self.ok = 0
        self.histogram = LatencyHistogram()
        self.outcomes: dict[str, int] = {}


class StepJudge:
    """Attributes payments to steps by their scheduled offset and judges each step."""

    def __init__(self, rate: StepRate, p99_ms_max: float, success_ratio_min: float) -> None:
        self.rate = rate
        self.p99_ms_max = p99_ms_max
        self.success_ratio_min = success_ratio_min
        self.judge_wait_s = min(max(2.0 * p99_ms_max / 1000.0, JUDGE_WAIT_S_MIN),
                                limits.STEP_JUDGE_WAIT_S_MAX)
        self.tallies = [_Tally() for _ in range(rate.steps)]
        self.samples: list[StepSample] = []
        self.lower_bound: list[bool] = []  # p99 of the step includes still-open payments
        self.verdict = None

    def step_of(self, offset_s: float) -> int | None:
        index = int(offset_s // self.rate.step_s)
        return index if 0 <= index < self.rate.steps else None

    def rate_of(self, index: int) -> float:
        return self.rate.start_rate_per_s + index * self.rate.increment_per_s

    def count_offers(self, payments):
        """Wrap the plan: count each payment for its step as the driver takes it."""
        for payment in payments:
            index = self.step_of(payment.offset_s)
            if index is not None:
                self.tallies[index].offered += 1
            yield payment

    def finished(self, event) -> None:
        index = self.step_of(event.offset_s)
        if index is None or index < len(self.samples):
            return  # past the run, or its step is already judged
        tally = self.tallies[index]
        tally.finished += 1
        tally.outcomes[event.outcome] = tally.outcomes.get(event.outcome, 0) + 1
        if event.committed:
            tally.ok += 1
        if event.latency_s is not None:
            tally.histogram.record(event.latency_s)

    def judge(self, index: int) -> bool:
        """Judge step `index` now; True if it held."""
        assert index == len(self.samples), (index, len(self.samples))
        tally = self.tallies[index]
        still_open = max(0, tally.offered - tally.finished)
        for _ in range(still_open):
            tally.histogram.record(self.judge_wait_s)
        p99_ms = tally.histogram.quantile(0.99) * 1000.0 if tally.histogram.count else None
        self.samples.append(StepSample(offered_per_s=self.rate_of(index),
                                       offered_count=tally.offered, ok_count=tally.ok,
                                       latency_p99_ms=p99_ms))
        self.lower_bound.append(still_open > 0)
        self.verdict = sustainable_rate(self.samples, self.p99_ms_max, self.success_ratio_min)
        return self.verdict.first_break_index is None

    async def monitor(self, session) -> None:
        """Judge each step once it is over and final (or judge_wait_s later); stop the load
        at the first step that breaks."""
        step_s = self.rate.step_s
        for index in range(self.rate.steps):
            step_end_s = session.start_s + (index + 1) * step_s
            while True:
                now_s = time.perf_counter()
                tally = self.tallies[index]
                if now_s >= step_end_s and (tally.finished >= tally.offered
                                            or now_s >= step_end_s + self.judge_wait_s):
                    break
                await asyncio.sleep(0.05)
            if not self.judge(index):
                session.stop.set()
                return


def _steps_figures(judge: StepJudge) -> list[dict]:
    verdict = judge.verdict
    rows = []
    for index, (sample, check) in enumerate(zip(judge.samples, verdict.steps)):
        tally = judge.tallies[index]
        rows.append({
            "offered_per_s": sample.offered_per_s,
            "offered_to_switch_per_s": sample.offered_count / judge.rate.step_s,
            "offered_count": sample.offered_count,
            "ok_count": sample.ok_count,
            "success_ratio": check.success_ratio,
            "latency_p99_ms": sample.latency_p99_ms,
            "p99_is_lower_bound": judge.lower_bound[index],
            "outcome": check.outcome.name,
            "outcomes": dict(sorted(tally.outcomes.items())),
        })
    return rows


def run_step(*, profile: Profile, transport: str, seed: int, p99_ms_max: float,
             success_ratio_min: float, report_dir: str, on_tick=None,
             work_dir: str | None = None) -> tuple[dict, object]:
    """Run a step search and write its report folder; (summary as in report.json, files)."""
    from bench.locust.driver import DriverOptions, run_session
    from bench.locust.plan import Plan
    from connectors.sim.population import Population

    rate = profile.rate
    assert isinstance(rate, StepRate), rate
    judge = StepJudge(rate, p99_ms_max, success_ratio_min)
    options = DriverOptions(transport=transport, seed=seed)
    payments = judge.count_offers(Plan(Population.build(profile, seed)).payments())
    run_tag = f"step{seed}x{time.time_ns() // 1_000_000 % 10**10}"
    result = run_session(profile, options, seconds=float(profile.duration_s), run_tag=run_tag,
                         payments=payments, on_finished=judge.finished, monitor=judge.monitor,
                         on_tick=on_tick, work_dir=work_dir)
    if judge.verdict is None:
        raise RuntimeError("the run ended before its first step was judged")
    verdict = judge.verdict
    steps = _steps_figures(judge)
    found = verdict.sustainable_rate_per_s
    held_index = (len(steps) - 1 if verdict.first_break_index is None
                  else verdict.first_break_index - 1)
    summary = {
        "kind": "step",
        "profile": profile.name,
        "seed": seed,
        "step_s": rate.step_s,
        "steps_planned": rate.steps,
        "steps_judged": len(steps),
        "start_rate_per_s": rate.start_rate_per_s,
        "increment_per_s": rate.increment_per_s,
        "p99_ms_bound": p99_ms_max,
        "success_ratio_bound": success_ratio_min,
        "capacity_result": verdict.result.name,
        "sustainable_rate_per_s": found,
        "sustainable_switch_rate_per_s": steps[held_index]["offered_to_switch_per_s"]
        if found is not None and held_index >= 0 else None,
        "first_break_index": verdict.first_break_index,
        "judge_wait_s": judge.judge_wait_s,
        "steps": steps,
    }
    summary.update(result.figures())
    summary["transport"] = transport
    found_text = "none" if found is None else f"{found:g}/s"
    title = f"Ponte step search over {transport}: sustainable rate {found_text}"
    return finish_run(report_dir, result.samples, summary, title)


def _progress_printer(console):
    def on_tick(session) -> None:
        series = session.series
        elapsed = session.elapsed_s()
        console.print(f"t={elapsed:6.1f}s offered={series.offered_total} "
                      f"completed={series.completed_total} "
                      f"ok={series.outcomes_total.get('OK', 0)} "
                      f"in_flight={session.driver.in_flight}", highlight=False)
    return on_tick


@click.command("step")
@click.option("--profile", "profile_name", default="step", show_default=True,
              help="connectors/sim/profiles name or TOML path.")
@click.option("--transport", type=click.Choice(["stream", "http"]), default="stream",
              show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--p99-ms", "p99_ms_max", type=float, default=limits.P99_MS_BOUND_DEFAULT,
              show_default=True, help="A step breaks when its transfer p99 is above this.")
@click.option("--success-min", "success_ratio_min", type=float,
              default=limits.SUCCESS_RATIO_BOUND_DEFAULT, show_default=True,
              help="A step breaks when fewer of its payments commit.")
@click.option("--step-s", type=int, default=None, help="Seconds per step [the profile's].")
@click.option("--steps", type=int, default=None, help="Number of steps [the profile's].")
@click.option("--start-rate", "start_rate_per_s", type=float, default=None,
              help="Payments per second of the first step [the profile's].")
@click.option("--increment", "increment_per_s", type=float, default=None,
              help="Payments per second added each step [the profile's].")
@click.option("--quick", is_flag=True, help="4 steps of 5 s from 200/s, +200/s each.")
@click.option("--report-dir", default=None, help="Report folder [reports/step-<time>/].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def step_command(profile_name, transport, seed, p99_ms_max, success_ratio_min, step_s, steps,
                 start_rate_per_s, increment_per_s, quick, report_dir, as_json) -> None:
    """Raise the offered rate in steps; report the highest rate whose p99 and success held."""
    from rich.console import Console

    console = Console(stderr=True)
    if quick:
        step_s = QUICK["step_s"] if step_s is None else step_s
        steps = QUICK["steps"] if steps is None else steps
        start_rate_per_s = QUICK["start_rate_per_s"] if start_rate_per_s is None \
            else start_rate_per_s
        increment_per_s = QUICK["increment_per_s"] if increment_per_s is None \
            else increment_per_s
    if not (p99_ms_max > 0 and math.isfinite(p99_ms_max)):
        raise click.UsageError("--p99-ms must be a positive number")
    if p99_ms_max > limits.STEP_JUDGE_WAIT_S_MAX * 1000 / 2:
        raise click.UsageError(f"--p99-ms must be at most {limits.STEP_JUDGE_WAIT_S_MAX * 500:g}")
    if not 0.0 <= success_ratio_min <= 1.0:
        raise click.UsageError("--success-min must be in [0, 1]")
    try:
        profile = step_profile(load_profile(profile_name), step_s=step_s, steps=steps,
                               start_rate_per_s=start_rate_per_s,
                               increment_per_s=increment_per_s)
    except (ProfileError, ValueError, msgspec.ValidationError) as error:
        raise click.UsageError(str(error)) from None
    rate = profile.rate
    folder = report_dir or default_report_dir("step")
    console.print(f"step: {rate.steps} steps of {rate.step_s} s from {rate.start_rate_per_s:g}/s "
                  f"(+{rate.increment_per_s:g}/s) over {transport}; bound p99 <= "
                  f"{p99_ms_max:g} ms, success >= {success_ratio_min:g}; starting the switch "
                  "and payees...")
    summary, files = run_step(profile=profile, transport=transport, seed=seed,
                              p99_ms_max=p99_ms_max, success_ratio_min=success_ratio_min,
                              report_dir=folder, on_tick=_progress_printer(console))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        for row in summary["steps"]:
            p99 = row["latency_p99_ms"]
            click.echo(f"  {row['offered_per_s']:>8g}/s  to switch "
                       f"{row['offered_to_switch_per_s']:>8.1f}/s  p99 {'>=' if row['p99_is_lower_bound'] else ''}{p99} ms  success "
                       f"{row['success_ratio']:.4f}  {row['outcome']}")
        click.echo(f"{summary['capacity_result']}: sustainable rate "
                   f"{summary['sustainable_rate_per_s']}/s (switch "
                   f"{summary['sustainable_switch_rate_per_s']}/s) over {transport}")
    console.print(f"report: {os.path.abspath(files.folder)}")
