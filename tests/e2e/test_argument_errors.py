"""Argument errors as a user sees them: one line on stderr, exit status 2, no usage text, and every piece of the
command line in it escaped as the rest of the tool escapes untrusted text (``views.safe.visible``): a file name from
a glob or a stray argument can hold escape sequences, C1 controls, bidi overrides or rich markup.

Every run is the real ``python -m wsinspect`` in a child process, stderr kept as bytes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from wsinspect.cli import build_parser
from wsinspect.commands.arguments import MIN_PING_INTERVAL

from .support import ROOT, capture_path, cli_env, run_wsinspect

#: Hostile arguments and how they must be shown: (raw, escaped).
HOSTILE = {
    "csi": ("\x1b[31mred", "\\x1b[31mred"),
    "osc-bel": ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    "c1-csi": ("\x9b2J", "\\x9b2J"),
    "bidi": ("a\u202eb", "a\\u202eb"),
    "markup": ("[red]markup[/]", "[red]markup[/]"),
}
UPSTREAM = "ws://127.0.0.1:1/"  # never reached: the arguments are refused first


def one_safe_line(done: subprocess.CompletedProcess[bytes], starts: str) -> str:
    """The error line, once checked: exit 2, nothing on stdout, one line, no character a terminal would act on."""
    err = done.stderr.decode("utf-8")
    assert done.returncode == 2, err
    assert done.stdout == b""
    assert err.endswith("\n") and err.count("\n") == 1, err
    line = err[:-1]
    assert all(ch.isprintable() for ch in line), ascii(line)  # no C0, DEL, C1, bidi or other format character
    assert "Traceback" not in err and "usage:" not in err
    assert line.startswith(starts), line
    return line


@pytest.mark.parametrize(("raw", "shown"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_stray_argument_is_reported_by_its_command_escaped(raw: str, shown: str) -> None:
    done = run_wsinspect(["read", capture_path("echo"), "extra", raw])
    line = one_safe_line(done, "wsinspect read: unrecognized arguments: extra ")
    assert shown in line and line.endswith("(try 'wsinspect read --help')")


def test_hostile_file_names_from_a_glob_are_escaped(tmp_path: Path) -> None:
    # What `wsinspect read *.pcapng` runs: the first name is the capture, the others are left over.
    names = {f"{raw.replace('/', '_')}.pcapng": f"{shown.replace('/', '_')}.pcapng" for raw, shown in HOSTILE.values()}
    for name in ["a.pcapng", *names]:
        (tmp_path / name).write_bytes(b"")
    done = run_wsinspect(["read", tmp_path / "a.pcapng", *(tmp_path / name for name in names)])
    line = one_safe_line(done, "wsinspect read: unrecognized arguments: ")
    for shown in names.values():
        assert shown in line


def test_a_name_that_is_not_utf8_is_escaped() -> None:
    # A name that is not UTF-8 reaches argv as lone surrogates ("surrogateescape"), shown as the bytes it had.
    done = subprocess.run([sys.executable, "-m", "wsinspect", "read", "x.pcapng", b"b\xff\x1b[2J"],
                          capture_output=True, env=cli_env(), cwd=ROOT, timeout=60, check=False)
    assert "\\xff\\x1b[2J" in one_safe_line(done, "wsinspect read: unrecognized arguments: ")


@pytest.mark.parametrize(("raw", "shown"), HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize(("args", "starts"), [
    (["read", "x.pcapng", "--max-frame"], "wsinspect read: --max-frame "),  # a type's error
    (["serve", "--mode"], "wsinspect serve: --mode "),  # not one of the choices
    (["connect", UPSTREAM, "--wait"], "wsinspect connect: --wait "),
    (["proxy", "--upstream", UPSTREAM, "--read-chunk"], "wsinspect proxy: --read-chunk "),
    (["demo", "--seed"], "wsinspect demo: --seed "),  # a plain int: argparse would show repr()
    (["frame", "build", "--text", "a", "--opcode"], "wsinspect frame build: --opcode "),
    ([], "wsinspect: "),  # not a command
], ids=["size", "choice", "seconds", "proxy-size", "int", "nested", "command"])
def test_a_bad_value_is_one_escaped_line(args: list[str], starts: str, raw: str, shown: str) -> None:
    line = one_safe_line(run_wsinspect([*args, raw]), starts)
    assert shown in line


@pytest.mark.parametrize(("raw", "shown"), HOSTILE.values(), ids=HOSTILE.keys())
def test_an_ambiguous_option_is_escaped(raw: str, shown: str) -> None:
    # argparse writes the whole argument as typed into this message: the last guard escapes it.
    line = one_safe_line(run_wsinspect(["serve", f"--max={raw}"]), "wsinspect serve: ambiguous option: --max=")
    assert shown in line


def test_with_colour_the_error_only_adds_colour() -> None:
    raw, shown = HOSTILE["osc-bel"]
    done = run_wsinspect(["read", "x.pcapng", "extra", raw], env=cli_env(FORCE_COLOR="1"))
    assert done.returncode == 2
    uncoloured = re.sub(rb"\x1b\[[0-9;]*m", b"", done.stderr)
    assert uncoloured != done.stderr  # FORCE_COLOR did colour it
    assert b"\x1b" not in uncoloured and b"\x07" not in uncoloured
    assert shown.encode() in uncoloured


# ---- every bad value: one line, exit status 2 -------------------------------------------------------------------

ECHO = str(capture_path("echo"))
BAD_VALUES = [
    # (command line before the option, option, value, what the line says is allowed)
    (["serve"], "--port", "70000", "not a TCP port (0-65535; 0 picks a free one)"),
    (["serve"], "--max-header", "0", "not a size of 1 byte or more"),
    (["serve"], "--max-frame", "0", "not a size of 1 byte or more"),
    (["serve"], "--max-message", "0", "not a size of 1 byte or more"),
    (["serve"], "--max-queue", "0", "not a size of 1 byte or more"),
    (["serve"], "--read-chunk", "0", "not a size of 1 byte or more"),
    (["serve"], "--fragment", "lots", "not a size, like 65536, 64k or 16M"),
    (["serve"], "--ping-interval", "0.001", f"0 (no pings) or {MIN_PING_INTERVAL:g} seconds or more"),
    (["serve"], "--ping-interval", "-1", f"0 (no pings) or {MIN_PING_INTERVAL:g} seconds or more"),
    (["serve"], "--ping-interval", "nan", f"0 (no pings) or {MIN_PING_INTERVAL:g} seconds or more"),
    (["serve"], "--max-connections", "0", "not a whole number, 1 or more"),
    (["serve"], "--mode", "zz", "not one of echo, chat, push"),
    (["connect", UPSTREAM], "--export", "x.pdf", "a handout is FILE.html, FILE.svg or FILE.txt"),
    (["connect", UPSTREAM], "--max-queue", "0", "not a size of 1 byte or more"),
    (["connect", UPSTREAM], "--max-header", "0", "not a size of 1 byte or more"),
    (["connect", UPSTREAM], "--open-timeout", "inf", "not a positive number of seconds"),
    (["proxy", "--upstream", UPSTREAM], "--read-chunk", "0", "not a size of 1 byte or more"),
    (["proxy", "--upstream", UPSTREAM], "--max-queue", "0", "not a size of 1 byte or more"),
    (["proxy", "--upstream", UPSTREAM], "--max-memory", "0", "not a size of 1 byte or more"),
    (["proxy", "--upstream", UPSTREAM], "--max-message", "0", "not a size of 1 byte or more"),
    (["read", ECHO], "--max-header", "0", "not a size of 1 byte or more"),
    (["read", ECHO], "--max-memory", "0", "not a size of 1 byte or more"),
    (["read", ECHO], "--count", "²", "not a whole number of packets, 1 or more"),  # "²".isdigit(), int("²") fails
    (["read", ECHO], "--port", "0", "not a TCP port (1-65535)"),
    (["read", ECHO], "--max-frame", "9" * 40, "not a size, like 65536, 64k or 16M"),
    (["sniff", "-i", "lo"], "--max-frame", "0", "not a size of 1 byte or more"),
    (["sniff", "-i", "lo"], "--max-memory", "0", "not a size of 1 byte or more"),
]


@pytest.mark.parametrize(("before", "option", "value", "allowed"), BAD_VALUES,
                         ids=[f"{before[0]}{option}={value[:8]}" for before, option, value, _ in BAD_VALUES])
def test_every_bad_value_is_one_line_naming_option_value_and_what_is_allowed(
        before: list[str], option: str, value: str, allowed: str) -> None:
    command = before[0]
    shown = shlex.quote(value)  # as the user could type it again
    line = one_safe_line(run_wsinspect([*before, option, value]), f"wsinspect {command}: {option} {shown}: ")
    assert allowed in line
    assert line.endswith(f"(try 'wsinspect {command} --help')")


def test_missing_arguments_are_one_line_too() -> None:
    line = one_safe_line(run_wsinspect(["read"]), "wsinspect read: ")
    assert "required: capture" in line
    line = one_safe_line(run_wsinspect(["frame"]), "wsinspect frame: ")
    assert "required: ACTION" in line


def test_a_leftover_of_a_nested_command_is_reported_by_it() -> None:
    line = one_safe_line(run_wsinspect(["frame", "build", "--text", "a", "stray"]),
                         "wsinspect frame build: unrecognized arguments: stray")
    assert line.endswith("(try 'wsinspect frame build --help')")


# ---- zeros that mean something stay -------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "dest", "value"), [
    (["serve", "--fragment", "0"], "fragment", 0),  # the default: messages are not split
    (["serve", "--ping-interval", "0"], "ping_interval", 0.0),  # off
    (["serve", "--ping-interval", f"{MIN_PING_INTERVAL:g}"], "ping_interval", MIN_PING_INTERVAL),
    (["serve", "--idle-timeout", "0"], "idle_timeout", 0.0),  # never
    (["serve", "--max-bytes", "0"], "max_bytes", 0),  # hex dumps without payload bytes
    (["serve", "--port", "0"], "port", 0),  # a free port
    (["connect", UPSTREAM, "--wait", "0"], "wait", 0.0),  # do not wait
    (["proxy", "--upstream", UPSTREAM, "--idle-timeout", "0"], "idle_timeout", 0.0),
    (["read", ECHO, "--stream", "0"], "stream", [0]),
    (["read", ECHO, "--max-bytes", "0"], "max_bytes", 0),
    (["read", ECHO, "--max-header", "1k"], "max_header", 1024),
])
def test_a_zero_with_a_meaning_is_accepted(args: list[str], dest: str, value: object) -> None:
    assert getattr(build_parser(args[0]).parse_args(args), dest) == value
