"""A simulator's configuration has one grammar, checked at every entrance (`ponte sim run`
options, its --config file, the demo): a rate below zero, a share above one or a run of no
time is refused with the field named, before anything connects."""

from __future__ import annotations

import msgspec
import pytest
from click.testing import CliRunner

from connectors.sim.cli import sim
from connectors.sim.participant import SimOptions
from connectors.sim.runner import RunConfig

VALID = {"port": 7400, "participants": [{"name": "bank_a", "api_key": "k"}]}


def test_a_valid_configuration_is_taken():
    config = msgspec.convert({**VALID, "tps": 0.5, "seconds": 1.0,
                              "options": {"reject_rate": 1.0}}, RunConfig)
    assert config.tps == 0.5
    assert config.options.reject_rate == 1.0


@pytest.mark.parametrize("field, value", [
    ("tps", -5.0), ("tps", 0.0), ("seconds", -3.0), ("seconds", 0.0),
    ("stats_interval_s", 0.0), ("drain_timeout_s", -1.0), ("pending_max", 0),
    ("port", 0), ("port", 70000),
])
def test_run_config_refuses_out_of_range(field, value):
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.convert({**VALID, field: value}, RunConfig)


@pytest.mark.parametrize("field, value", [
    ("reject_rate", 7.0), ("reject_rate", -0.1), ("silence_rate", 1.5),
    ("return_rate", -1.0), ("answer_latency_ms", -1.0), ("expiry_s", 0.0),
])
def test_options_refuse_out_of_range(field, value):
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.convert({**VALID, "options": {field: value}}, RunConfig)


def test_reject_and_silence_shares_cannot_exceed_one_together():
    with pytest.raises(msgspec.ValidationError, match="reject_rate"):
        msgspec.convert({"reject_rate": 0.7, "silence_rate": 0.5}, SimOptions)


@pytest.mark.parametrize("option, value", [("--tps", "-5"), ("--seconds", "-3"),
                                           ("--reject-rate", "7"), ("--return-rate", "2")])
def test_sim_run_refuses_out_of_range_options_before_connecting(option, value):
    # Port 1 has nothing listening: had the option been taken, the run would fail to
    # connect instead of being refused as a usage error.
    result = CliRunner().invoke(sim, ["run", "--participant", "bank_a=k", "--port", "1",
                                      option, value])
    assert result.exit_code == 2, result.output
    assert "bad simulator configuration" in result.output
    assert option.lstrip("-").replace("-", "_") in result.output
