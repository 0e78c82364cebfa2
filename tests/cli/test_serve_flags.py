"""``swapcore serve``'s llama-swap flags (``--config``, ``--listen``) and global flags anywhere."""

from __future__ import annotations

import pytest

from swapcore.cli import main
from swapcore.cli.main import hoist_global_flags
from swapcore.cli.serve import parse_listen
from swapcore.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "address"),
    [
        (":8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::1]:80", ("::1", 80)),
        (" :8080 ", ("0.0.0.0", 8080)),
    ],
)
def test_listen_reads_as_llama_swap_does(text: str, address: tuple[str, int]) -> None:
    assert parse_listen(text) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8080", "expected HOST:PORT"),
        (":", "expected HOST:PORT"),
        ("host:0", "expected HOST:PORT"),
        ("host:70000", "expected HOST:PORT"),
        ("host:http", "expected HOST:PORT"),
        ("::1:80", "in brackets"),
    ],
)
def test_bad_listen_addresses_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_listen(text)


@pytest.mark.parametrize(
    ("argv", "hoisted"),
    [
        (["serve", "-v", "c.yaml"], ["-v", "serve", "c.yaml"]),
        (["serve", "c.yaml", "-vv", "--verbose"], ["-vv", "--verbose", "serve", "c.yaml"]),
        (["-v", "serve"], ["-v", "serve"]),
        (["check", "x", "--", "-v"], ["check", "x", "--", "-v"]),
        (["--version"], ["--version"]),
        (["serve", "--demo", "gpus"], ["serve", "--demo", "gpus"]),
    ],
)
def test_global_flags_after_the_subcommand_move_before_it(
    argv: list[str], hoisted: list[str]
) -> None:
    assert hoist_global_flags(argv) == hoisted


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", ":8080", "--port", "9000"], "--listen: cannot be combined with --port"),
        (
            ["--listen", ":8080", "--host", "h", "--port", "1"],
            "--listen: cannot be combined with --host and --port",
        ),
        (["a.yaml", "--config", "b.yaml"], "--config: given twice"),
        (["--listen", "nowhere"], "--listen: expected HOST:PORT"),
        (["--port", "0"], "--port: must be in 1..65535"),
    ],
)
def test_conflicting_or_bad_flags_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvicorn")
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"swapcore serve: error: {message}"), err
    assert "Traceback" not in err
