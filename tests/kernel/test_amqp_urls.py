"""INFERQ_AMQP_URL as a list of nodes, and INFERQ_REDIS_URL in its Sentinel form: what the
settings accept, what they refuse (a settings error saying which URL), and the heartbeat each
AMQP URL gets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from inferq.redis_client import SentinelAddress, parse_sentinel_url
from inferq.settings import CommonSettings


def settings(**env: Any) -> CommonSettings:
    return CommonSettings(_env_file=None, **env)


def test_one_url_is_as_before() -> None:
    one = settings(amqp_url="amqp://u:p@h1:5672/")
    assert one.amqp_urls == ["amqp://u:p@h1:5672/?heartbeat=10"]
    assert one.amqp_connection_url == "amqp://u:p@h1:5672/?heartbeat=10"
    assert settings().amqp_urls == ["amqp://guest:guest@127.0.0.1:5672/?heartbeat=10"]


def test_several_urls_each_get_the_heartbeat() -> None:
    nodes = settings(
        amqp_url=" amqp://u:p@h1:5672/ ,amqp://u:p@h2:5673/vhost?name=x, "
        "amqps://u:p@h3:5674/?heartbeat=3",
        amqp_heartbeat_s=7,
    )
    assert nodes.amqp_urls == [
        "amqp://u:p@h1:5672/?heartbeat=7",
        "amqp://u:p@h2:5673/vhost?name=x&heartbeat=7",
        "amqps://u:p@h3:5674/?heartbeat=3",  # its own wins
    ]
    assert nodes.amqp_connection_url == nodes.amqp_urls[0]
    assert nodes.amqp_url == (  # kept without the spaces
        "amqp://u:p@h1:5672/,amqp://u:p@h2:5673/vhost?name=x,amqps://u:p@h3:5674/?heartbeat=3"
    )


def test_the_environment_variable_takes_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERQ_AMQP_URL", "amqp://h1/,amqp://h2:5673/")
    assert settings().amqp_urls == ["amqp://h1/?heartbeat=10", "amqp://h2:5673/?heartbeat=10"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("amqp://h1/,", "an empty URL"),
        ("amqp://h1/,,amqp://h2/", "an empty URL"),
        ("", "an empty URL"),
        ("http://h1/", "'http://h1/' is not an amqp:// or amqps:// URL"),
        ("amqp://h1/,h2:5672", "'h2:5672' is not an amqp:// or amqps:// URL"),
        ("amqp:///vhost", "with a host"),
        ("amqp://h1:port/", "'amqp://h1:port/' is not a URL"),
    ],
)
def test_a_bad_url_is_a_settings_error(value: str, says: str) -> None:
    with pytest.raises(ValidationError) as error:
        settings(amqp_url=value)
    assert "amqp_url" in str(error.value) and says in str(error.value)


def test_sentinel_url() -> None:
    assert parse_sentinel_url("redis+sentinel://:p%40ss@h1:26379, h2:26380/mymaster/2") == (
        SentinelAddress([("h1", 26379), ("h2", 26380)], "mymaster", 2, None, "p@ss")
    )
    assert parse_sentinel_url("redis+sentinel://h1/m") == SentinelAddress([("h1", 26379)], "m")
    assert settings(redis_url="redis+sentinel://h1:1,h2:2/m").redis_url.endswith("/m")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("redis+sentinel://h1:26379", "no master name"),
        ("redis+sentinel://h1:x/m", "'h1:x' is not a number"),
        ("redis+sentinel://h1:1,/m", "an empty sentinel address"),
        ("redis+sentinel://h1:1/m/zero", "'zero' is not a number"),
    ],
)
def test_a_bad_sentinel_url_is_a_settings_error(value: str, says: str) -> None:
    with pytest.raises(ValidationError) as error:
        settings(redis_url=value)
    assert "redis_url" in str(error.value) and says in str(error.value)
