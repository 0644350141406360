"""ServerConfig: TOML < environment < overrides, bounds in the types, secrets never print."""

from __future__ import annotations

import msgspec
import pytest

from switch.server.config import Secret, describe, load_config


def test_precedence_defaults_toml_env_overrides(tmp_path):
    path = tmp_path / "ponte.toml"
    path.write_text('[server]\nstream_port = 9100\nadmin_port = 9101\n'
                    '[server.core]\nin_flight_max = 500\n')
    config = load_config(str(path), environ={"PONTE_ADMIN_PORT": "9200",
                                             "PONTE_CORE__EXPIRY_MS_MAX": "60000",
                                             "UNRELATED": "x"}, data_dir="/tmp/x")
    assert config.stream_port == 9100  # TOML
    assert config.admin_port == 9200  # env beats TOML
    assert config.core.in_flight_max == 500
    assert config.core.expiry_ms_max == 60000  # nested env
    assert config.data_dir == "/tmp/x"  # keyword override


def test_secrets_are_redacted_everywhere():
    config = load_config(None, environ={"PONTE_ADMIN_TOKEN": "hunter2-hunter2",
                                        "PONTE_POSTGRES_DSN": "postgresql://u:pw@h/db"})
    assert isinstance(config.admin_token, Secret)
    assert config.admin_token.reveal() == "hunter2-hunter2"
    text = repr(config) + str(describe(config))
    assert "hunter2" not in text and "pw@" not in text
    assert describe(config)["admin_token"] == "<redacted>"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(config.admin_token)


@pytest.mark.parametrize("environ, field", [
    ({"PONTE_STREAM_PORT": "70000"}, "stream_port"),
    ({"PONTE_JOURNAL": "tape"}, "journal"),
    ({"PONTE_CORE__IN_FLIGHT_MAX": "0"}, "in_flight_max"),
    ({"PONTE_TICK_EVENTS_MAX": "999999"}, "tick_events_max"),
])
def test_out_of_bounds_values_name_the_field(environ, field):
    with pytest.raises(msgspec.ValidationError, match=field):
        load_config(None, environ=environ)


def test_relations_between_fields_are_checked():
    with pytest.raises(msgspec.ValidationError, match="postgres_dsn"):
        load_config(None, environ={"PONTE_JOURNAL": "postgres"})
    with pytest.raises(msgspec.ValidationError, match="pending_max"):
        load_config(None, environ={"PONTE_CORE__IN_FLIGHT_MAX": "200000"})
    with pytest.raises(msgspec.ValidationError, match="stream_tls"):
        load_config(None, environ={"PONTE_STREAM_TLS_CERT": "/x.pem"})
