"""Reading Wyoming events without trusting the peer.

``wyoming.event.async_read_event`` returns None (= "disconnected") for any undecodable line and reads payloads of
any announced size. A public server needs to tell the client what was wrong, keep the connection when the framing
is still intact, and refuse to buffer unbounded data.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, Optional

from wyoming.event import Event


class MalformedEvent(ValueError):
    """An event that cannot be decoded. ``recoverable`` is False when the byte stream can no longer be framed."""

    def __init__(self, message: str, recoverable: bool = True):
        super().__init__(message)
        self.recoverable = recoverable


def _length(header: Dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEvent(f"{key} must be a non-negative integer", recoverable=False)
    if value > limit:
        raise MalformedEvent(f"{key} {value} exceeds this server's limit of {limit} bytes", recoverable=False)
    return value


async def read_event(reader: asyncio.StreamReader, max_bytes: int) -> Optional[Event]:
    """The next event, None at end of stream, or MalformedEvent. Data and payload are capped at ``max_bytes``."""
    try:
        line = await reader.readline()
    except ValueError as err:  # a header line longer than the reader's limit (the line is discarded)
        raise MalformedEvent(f"event header line too long: {err}") from err
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # the peer closed in the middle of a line
    try:
        header = json.loads(line)
    except ValueError as err:
        raise MalformedEvent("not a Wyoming event: the header line is not JSON") from err
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise MalformedEvent("not a Wyoming event: the header needs a string 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise MalformedEvent("event 'data' must be a JSON object")

    data_length = _length(header, "data_length", max_bytes)
    payload_length = _length(header, "payload_length", max_bytes)
    try:
        extra = await reader.readexactly(data_length) if data_length else b""
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    if extra:
        try:
            more = json.loads(extra)
        except ValueError as err:
            raise MalformedEvent("event data block is not JSON") from err
        if not isinstance(more, dict):
            raise MalformedEvent("event data block must be a JSON object")
        data = {**data, **more}
    return Event(type=header["type"], data=data, payload=payload)
