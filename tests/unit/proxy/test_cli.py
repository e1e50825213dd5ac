"""The CLI's start-up decisions that need no socket: max_clients against the fd limit,
the one-line listen errors, where a config is looked for, --version."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from config.model import Address
from proxy import cli, startup


@pytest.mark.parametrize(
    ("wanted", "fd_limit", "fitted"),
    [
        (10000, 1024, 480),  # (1024 - 64) // 2
        (10000, 1048576, 10000),  # enough: unchanged
        (10000, 20064, 10000),  # exactly enough
        (10000, 20063, 9999),
        (10, 30, 1),  # never below one client
        (10000, -1, 10000),  # RLIM_INFINITY
    ],
)
def test_fitted_max_clients(wanted: int, fd_limit: int, fitted: int) -> None:
    assert startup.fitted_max_clients(wanted, fd_limit) == fitted


ADDR = Address("127.0.0.1", 6380)
KNOB = "[proxy] listen in g.toml"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            OSError(errno.EADDRINUSE, "Address already in use"),
            "127.0.0.1:6380 is already in use: stop what listens there, "
            "or change [proxy] listen in g.toml",
        ),
        (
            OSError(errno.EACCES, "Permission denied"),
            "permission denied to listen on 127.0.0.1:6380; change [proxy] listen in g.toml",
        ),
        (
            OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
            "cannot listen on 127.0.0.1:6380: not an address of this machine; "
            "change [proxy] listen in g.toml",
        ),
        (
            OSError(errno.ENOBUFS, "No buffer space available"),
            "cannot listen on 127.0.0.1:6380: No buffer space available; "
            "change [proxy] listen in g.toml",
        ),
    ],
)
def test_listen_errors_are_one_line(error: OSError, expected: str) -> None:
    assert startup.describe_listen_error(ADDR, KNOB, error) == expected


def test_privileged_port_says_why() -> None:
    line = startup.describe_listen_error(
        Address("0.0.0.0", 80), "--port", OSError(errno.EACCES, "x")
    )
    assert line == (
        "permission denied to listen on 0.0.0.0:80 "
        "(ports below 1024 need root or CAP_NET_BIND_SERVICE); change --port"
    )


def test_unresolvable_host() -> None:
    error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    line = startup.describe_listen_error(Address("nohost", 6380), KNOB, error)
    assert line == "cannot listen on nohost:6380: host 'nohost' does not resolve; " + (
        "change [proxy] listen in g.toml"
    )


def test_config_given_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "georedis.toml").write_text("")
    assert cli.find_config("other.toml") == "other.toml"


def test_config_found_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "georedis.toml").write_text("")
    assert cli.find_config(None) == "./georedis.toml"


def test_no_config_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "CONFIG_SEARCH", ("./georedis.toml", str(tmp_path / "etc.toml")))
    with pytest.raises(cli.StartupError) as info:
        cli.find_config(None)
    assert f"looked for ./georedis.toml and {tmp_path / 'etc.toml'}; pass --config FILE" in str(
        info.value
    )


def test_version_text_lines() -> None:
    lines = cli.version_text().splitlines()
    assert [x.split()[0] for x in lines] == ["georedis", "Python", "uvloop", "hiredis", "C"]


@pytest.mark.parametrize("text", ["0", "65536", "x", "-1", ""])
def test_port_flag_rejects_non_ports(text: str) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["demo", "--port", text])


def test_port_flag() -> None:
    assert cli.build_parser().parse_args(["demo", "--port", "7777"]).port == 7777
