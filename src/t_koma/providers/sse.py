"""An incremental Server-Sent Events decoder (the WHATWG event-stream format).

Comment lines (`: OPENROUTER PROCESSING`) are skipped, blank lines that follow only comments dispatch nothing,
`data:` lines of one event are joined with newlines, and lines may end in LF, CRLF or CR — split anywhere across
network chunks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back the complete events they finish."""

    __slots__ = ("_buffer", "_data", "_event", "_id")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = _normalise_newlines(buffer)
            if buffer.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
                lines = buffer[:-1].split(b"\n")
                self._buffer = lines.pop() + b"\r"
                return self._take_lines(lines)
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        return self._take_lines(lines)

    def close(self) -> list[SSEEvent]:
        """End of stream: a final line without its newline still counts; an unterminated event is dropped,
        as the specification says."""
        rest, self._buffer = self._buffer, b""
        # A pending CR ends its line (it was held back only in case an LF followed): "\r" alone is a blank line.
        return self._take_lines([rest.removesuffix(b"\r")]) if rest else []

    def _take_lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        for raw in lines:
            if not raw:
                if data:
                    text = data[0] if len(data) == 1 else "\n".join(data)
                    events.append(SSEEvent(text, self._event or "message", self._id))
                    data = self._data = []
                self._event = ""
                continue
            if raw.startswith(b"data:"):  # most lines: decoded without the generic field split below
                value = raw[6:] if raw[5:6] == b" " else raw[5:]
                data.append(value.decode("utf-8", errors="replace"))
            elif raw[0] != 0x3A:  # ":" starts a comment / keep-alive
                self._field(raw.decode("utf-8", errors="replace"))
        return events

    def _field(self, line: str) -> None:
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value


def _normalise_newlines(buffer: bytes) -> bytes:
    buffer = buffer.replace(b"\r\n", b"\n")
    if buffer.endswith(b"\r"):
        return buffer[:-1].replace(b"\r", b"\n") + b"\r"
    return buffer.replace(b"\r", b"\n")
