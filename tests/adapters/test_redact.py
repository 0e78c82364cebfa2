"""Redaction of log lines: query strings, URL passwords and configured secrets."""

from __future__ import annotations

import logging

import pytest

from swapcore.adapters.redact import (
    REDACTED,
    RedactingFilter,
    config_secrets,
    redact_text,
    secret_name,
)
from swapcore.config import parse_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"POST /v1/chat?key=abc HTTP/1.1" 200', '"POST /v1/chat?<redacted> HTTP/1.1" 200'),
        ("GET http://h:1/x?a=1&b=2 done", "GET http://h:1/x?<redacted> done"),
        ("url 'https://h/p?token=t' end", "url 'https://h/p?<redacted>' end"),
        ("connect http://user:pw@host:8/x", f"connect http://user:{REDACTED}@host:8/x"),
        ("is this a question? yes", "is this a question? yes"),
        ("no query /v1/models here", "no query /v1/models here"),
    ],
)
def test_redact_text_hides_queries_and_passwords(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_text_hides_each_secret_everywhere() -> None:
    text = "key sk-longer-one and sk-long, again sk-long"
    expected = f"key {REDACTED} and {REDACTED}, again {REDACTED}"
    assert redact_text(text, ["sk-longer-one", "sk-long"]) == expected


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("--api-key", True),
        ("HF_TOKEN", True),
        ("OPENAI_API_KEY", True),
        ("--password", True),
        ("DB_PASSWD", True),
        ("--port", False),
        ("CUDA_VISIBLE_DEVICES", False),
        ("--model", False),
    ],
)
def test_secret_name(name: str, secret: bool) -> None:
    assert secret_name(name) is secret


def test_config_secrets_collects_keys_options_and_environment() -> None:
    config = parse_config(
        {
            "apiKeys": ["gateway-key"],
            "models": {
                "a": {
                    "cmd": "server --port ${PORT} --api-key argv-key --hf-token=argv-token -m x",
                    "cmdStop": "stop --auth stop-secret",
                    "env": ["HF_TOKEN=env-token", "CUDA_VISIBLE_DEVICES=0"],
                },
            },
            "peers": {
                "remote": {"proxy": "http://10.0.0.1:8080", "apiKey": "peer-key", "models": ["r"]}
            },
        }
    )
    assert config_secrets(config) == {
        "gateway-key",
        "argv-key",
        "argv-token",
        "stop-secret",
        "env-token",
        "peer-key",
    }


def test_config_secrets_ignores_values_too_short_to_redact() -> None:
    config = parse_config({"models": {"a": {"cmd": "server --port ${PORT} --api-key ab"}}})
    assert config_secrets(config) == set()


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("third.party", logging.INFO, __file__, 1, msg, args, exc_info)


def test_filter_rewrites_the_formatted_message_and_keeps_the_record() -> None:
    keep = RedactingFilter(["sk-secret"])
    record = _record("GET %s with %s", "/v1/x?api_key=sk-secret", "sk-secret")
    assert keep.filter(record) is True
    assert record.getMessage() == f"GET /v1/x?<redacted> with {REDACTED}"


def test_filter_redacts_exceptions_and_stacks() -> None:
    keep = RedactingFilter(["hunter22"])
    try:
        raise RuntimeError("login failed for http://u:hunter22@db/x?pw=hunter22")
    except RuntimeError as exc:
        record = _record("boom", exc=exc)
    record.stack_info = "Stack: hunter22"
    keep.filter(record)
    text = logging.Formatter().format(record)
    assert "hunter22" not in text
    assert "RuntimeError" in text


def test_filter_takes_longest_secrets_first_and_learns_more() -> None:
    keep = RedactingFilter(["abcd", "abcdefgh", "xy"])  # "xy" is too short to redact
    record = _record("abcdefgh abcd xy later")
    keep.filter(record)
    assert record.getMessage() == f"{REDACTED} {REDACTED} xy later"
    keep.add(["later"])
    record = _record("later")
    keep.filter(record)
    assert record.getMessage() == REDACTED


def test_filter_keeps_a_record_whose_message_cannot_format() -> None:
    record = _record("%d items", "not a number")
    assert RedactingFilter(["secret"]).filter(record) is True
