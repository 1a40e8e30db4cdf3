"""``--export FILE.html | FILE.svg | FILE.txt`` on ``handshake`` and ``frame``: the handout is what was shown.

HTML is read back with ``html.parser`` and its text compared with the terminal's; SVG must be well-formed XML;
text must equal, byte for byte, what the terminal got without colour, at the fixed width of 100 columns.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .support import has_no_escape, run_process

COMMANDS = [
    ["frame", "build", "--text", "Hello", "--mask", "37fa213d"],
    ["frame", "decode", "0x01 0x03 0x48 0x65 0x6c", "0x80 0x02 0x6c 0x6f", "--from-server"],
    ["handshake"],
    ["handshake", "--key", "abc"],
]
IDS = ["frame-build", "frame-decode", "handshake", "handshake-bad-key"]


class _TextAndStyles(HTMLParser):
    """The text of rich's ``<pre><code>`` and the inline styles it uses."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inside = 0
        self.text: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "code":
            self.inside += 1
        self.styles += [value for name, value in attrs if name == "style" and value]

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self.inside -= 1

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text.append(data)


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_text_export_is_what_the_terminal_got(tmp_path: Path, command: list[str]) -> None:
    handout = tmp_path / "handout.txt"
    # a narrow terminal: exporting lays out at the handout's 100 columns for both
    done = run_process([*command, "--color", "never", "--export", str(handout)], columns=60)
    assert done.code in (0, 1), done.err
    saved = handout.read_text(encoding="utf-8")
    assert saved == done.out
    lines = saved.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert any(len(line) > 60 for line in lines)  # laid out for 100 columns, not the terminal's 60


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_html_export_parses_and_keeps_the_colours(tmp_path: Path, command: list[str]) -> None:
    handout = tmp_path / "handout.html"
    done = run_process([*command, "--color", "never", "--theme", "dark", "--export", str(handout)])
    parser = _TextAndStyles()
    parser.feed(handout.read_text(encoding="utf-8"))
    parser.close()
    assert "".join(parser.text).rstrip("\n") == done.out.rstrip("\n")
    # the terminal had no colour (--color never); the handout has the theme's
    assert any("color" in style for style in parser.styles)


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_svg_export_is_well_formed(tmp_path: Path, command: list[str]) -> None:
    handout = tmp_path / "handout.svg"
    done = run_process([*command, "--export", str(handout)])
    assert done.code in (0, 1), done.err
    root = ElementTree.parse(handout).getroot()
    assert root.tag.endswith("svg")
    text = "".join(element.text or "" for element in root.iter() if element.tag.endswith("text"))
    assert ("RFC" in text.replace("\xa0", " ")) or ("Frame" in text)


def test_hostile_payload_in_every_export_is_escaped(tmp_path: Path) -> None:
    for suffix in ("txt", "html", "svg"):
        handout = tmp_path / f"hostile.{suffix}"
        done = run_process(["frame", "build", "--text", "\x1b]0;pwned\x07\x1b[2J<script>", "--export", str(handout)])
        assert done.code == 0
        content = handout.read_text(encoding="utf-8")
        assert has_no_escape(content)
        if suffix != "txt":  # in HTML and SVG, pasted markup is text, escaped, never an element
            assert "<script>" not in content and "&lt;script&gt;" in content


@pytest.mark.parametrize(("target", "why"), [("handout.pdf", "FILE.html, FILE.svg or FILE.txt"),
                                             ("no/such/folder/handout.html", "no such folder")])
def test_bad_export_target_is_one_line(tmp_path: Path, target: str, why: str) -> None:
    done = run_process(["frame", "build", "--text", "x", "--export", str(tmp_path / target)])
    assert done.code == 2
    assert done.out == ""
    assert why in done.err and "Traceback" not in done.err


def test_light_theme_handout_is_on_a_light_page(tmp_path: Path) -> None:
    handout = tmp_path / "light.html"
    run_process(["handshake", "--theme", "light", "--export", str(handout)])
    assert "#ffffff" in handout.read_text(encoding="utf-8").lower()


def test_options_before_check_are_kept(tmp_path: Path) -> None:
    """'handshake --export F check FILE' and 'handshake check FILE --export F' save the same handout."""
    paste = tmp_path / "request.txt"
    paste.write_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    before, after = tmp_path / "before.txt", tmp_path / "after.txt"
    first = run_process(["handshake", "--export", str(before), "--color", "never", "check", str(paste)])
    second = run_process(["handshake", "check", str(paste), "--color", "never", "--export", str(after)])
    assert first.code == second.code == 1
    assert before.read_text(encoding="utf-8") == after.read_text(encoding="utf-8") == first.out
