"""The files a session writes besides what it shows, for ``serve``, ``connect``, ``proxy`` and ``demo``:
``--json FILE`` (JSON lines, the schema of ``read --json``; ``-`` writes them to stdout) and ``--record FILE``
(the session's bytes as a pcapng or pcap capture).

Both are opened before the session starts (before listening or connecting): a file that cannot be opened is a
usage error then, not a lost session later. A write that fails later (a full disk) is said once, naming the file;
the file is incomplete from there on, and the session goes on, since the session is what is being debugged. At the
end ``exit_status`` names the files that are incomplete.

Plain file I/O, no event loop: the demo, which has none, writes its recording through it too.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from wsinspect.client.target import UsageError
from wsinspect.core.events import Direction, Event
from wsinspect.views.safe import visible

if TYPE_CHECKING:  # scapy's writers are imported with --record only
    from wsinspect.capture.writer import SessionRecorder
    from wsinspect.views.jsonlines import JsonLinesView

#: Where a command says a line on stderr (already escaped).
Say = Callable[[str], None]


class Recording:
    """``--record``: each connection's bytes, as they crossed the socket. Without ``--record``, or once a write has
    failed, every call does nothing."""

    def __init__(self, recorder: SessionRecorder | None, failed: Callable[[OSError], None]) -> None:
        self._recorder = recorder
        self._failed = failed

    @property
    def active(self) -> bool:
        return self._recorder is not None

    def _call(self, write: Callable[[SessionRecorder], None]) -> None:
        if self._recorder is None:
            return
        try:
            write(self._recorder)
        except OSError as failure:
            self._recorder = None
            self._failed(failure)

    def open(self, stream: int, client: tuple[str, int], server: tuple[str, int], time: float) -> None:
        self._call(lambda recorder: recorder.open(stream, client, server, time))

    def data(self, stream: int, direction: Direction, data: bytes, time: float) -> None:
        self._call(lambda recorder: recorder.data(stream, direction, data, time))

    def close(self, stream: int, time: float) -> None:
        self._call(lambda recorder: recorder.close(stream, time))

    def finish(self, time: float) -> None:
        """Close what is still open and the file."""
        self._call(lambda recorder: recorder.finish(time))


class JsonSink:
    """``--json`` as one more event sink, for a command that hands each event to a list of them (serve)."""

    def __init__(self, outputs: Outputs) -> None:
        self.outputs = outputs

    def handle(self, event: Event) -> None:
        self.outputs.event(event)

    def close(self) -> None:
        """Nothing: ``Outputs.finish`` closes the file once every sink is closed."""


class Outputs:
    """One session's ``--json`` and ``--record``, opened at once (see the module docstring)."""

    def __init__(self, *, json: str | None, record: str | None, command: str, say: Say) -> None:
        """``json``: a file name, or ``-`` for stdout; ``record``: a file name; None: not asked for. ``command``
        and ``say``: who reports a write that fails later, and where. UsageError, the name escaped, when a file
        cannot be opened; nothing is left open then."""
        self.command = command
        self._say = say
        self.incomplete: list[str] = []  # "--json FILE", "--record FILE": the files a write failed on
        self._json_file: TextIO | None = None
        self._json: JsonLinesView | None = None  # None without --json, and once a write failed
        self._json_name = ""
        self.recording = Recording(None, lambda failure: None)
        self._open(json, record)

    def _failed(self, what: str, failure: OSError) -> None:
        if what in self.incomplete:
            return
        self.incomplete.append(what)
        self._say(f"wsinspect {self.command}: writing {what} failed ({visible(failure.strerror or str(failure))}); "
                  "the file is incomplete from here on, the session goes on")

    def event(self, event: Event) -> None:
        """One JSON line, with ``--json``."""
        if self._json is None:
            return
        try:
            self._json.handle(event)
        except OSError as failure:
            self._json = None
            self._failed(f"--json {self._json_name}", failure)

    def finish(self, time: float) -> None:
        """At the end of the session (also after an error or Ctrl-C): what was written so far is kept."""
        json_file = self._json_file
        if json_file is not None and json_file is not sys.stdout:
            if self._json is not None:
                try:
                    self._json.close()
                except OSError as failure:
                    self._failed(f"--json {self._json_name}", failure)
            with contextlib.suppress(OSError):  # said above: what failed to be written fails again here
                json_file.close()
        self.recording.finish(time)

    def _open(self, json: str | None, record: str | None) -> None:
        from wsinspect.views.jsonlines import JsonLinesView

        try:
            if json == "-":
                self._json_file = sys.stdout
            elif json:
                # Line-buffered, so `tail -f` on the file follows the session live.
                self._json_file = open(json, "w", encoding="ascii", buffering=1)  # noqa: SIM115 - closed by finish()
            if self._json_file is not None:
                self._json, self._json_name = JsonLinesView(self._json_file), visible(str(json))
            if record:
                from wsinspect.capture.writer import SessionRecorder

                what = f"--record {visible(record)}"
                self.recording = Recording(SessionRecorder(record), lambda failure: self._failed(what, failure))
        except OSError as failure:
            which, name = ("--json", json) if json and self._json_file is None else ("--record", record)
            if self._json_file is not None and self._json_file is not sys.stdout:
                self._json_file.close()
            raise UsageError(f"cannot write {which} {visible(str(name))}: "
                             f"{visible(failure.strerror or str(failure))}") from None

    def exit_status(self, status: int, *, when_incomplete: int) -> int:
        """``status``, or ``when_incomplete`` after a line naming the files a write failed on."""
        if not self.incomplete:
            return status
        self._say(f"wsinspect {self.command}: the record is incomplete: {', '.join(self.incomplete)} (a write "
                  f"failed; exit status {when_incomplete})")
        return when_incomplete
