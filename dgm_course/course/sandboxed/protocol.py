"""The framing of every channel between the grader and a sandboxed run: a frame is one line of
JSON (its head, an object whose ``nbytes`` is the size of what follows) and then that many bytes.

The grader reads what a run wrote as untrusted bytes: a head line longer than ``limit``, a head
that is not an object or whose ``nbytes`` is not a non-negative integer (``1e400``, ``NaN``,
``1.5``) is not a frame (``ValueError``), and JSON nested too deep raises ``RecursionError``.

Example:
    >>> data = frame({"event": "end"}, b"xyz") + b"rest"
    >>> split_head(data)
    ({'event': 'end', 'nbytes': 3}, 30, 3)
    >>> read_frame(data)
    ({'event': 'end', 'nbytes': 3}, b'xyz')
"""

from __future__ import annotations

import json
import os
from typing import NoReturn

__all__ = ["HEAD_LIMIT", "LOG_HEAD_LIMIT", "finish", "frame", "job_config", "read_frame", "read_from",
           "result_channel", "split_head", "write_frame"]

HEAD_LIMIT = 1 << 16  # bytes of a head line, newline included
LOG_HEAD_LIMIT = 1 << 20  # of a head that carries a run's log (nbgrader's autograde and feedback runs)


def frame(head: dict, payload: bytes = b"") -> bytes:
    """``head`` (plus ``nbytes``) as one line of JSON, then ``payload``."""
    return json.dumps({**head, "nbytes": len(payload)}).encode() + b"\n" + payload


def write_frame(stream, head: dict, payload: bytes = b"") -> None:
    """Write one frame to a binary ``stream`` and flush it."""
    stream.write(frame(head, payload))
    stream.flush()


def split_head(data: bytes | bytearray, limit: int = HEAD_LIMIT) -> tuple[dict, int, int] | None:
    """The head of the frame that starts ``data``, where its payload starts and the payload's size;
    ``None`` while the head line is still incomplete (the payload may be too)."""
    newline = data.find(b"\n", 0, limit)
    if newline < 0:
        if len(data) >= limit:
            raise ValueError("a head line longer than the limit")
        return None
    head = json.loads(data[:newline])
    size = head.get("nbytes") if isinstance(head, dict) else None
    if type(size) is not int or size < 0:
        raise ValueError("a head without a payload size")
    return head, newline + 1, size


def read_frame(data: bytes, limit: int = HEAD_LIMIT) -> tuple[dict, bytes]:
    """The whole frame that starts ``data`` (a run's finished output): its head and payload."""
    split = split_head(data, limit)
    if split is None:
        raise ValueError("no head line")
    head, start, size = split
    payload = bytes(data[start: start + size])
    if len(payload) != size:
        raise ValueError("a truncated payload")
    return head, payload


def read_from(stream, limit: int = HEAD_LIMIT) -> tuple[dict, bytes]:
    """The next frame of a binary ``stream``, read as it arrives."""
    split = split_head(stream.readline(limit), limit)
    if split is None:
        raise ValueError("the stream ended inside a head line")
    head, _, size = split
    return head, stream.read(size)


# ---------------------------------------------------------------------------------------------
# The run's side (the programs of this folder)


def job_config(variable: str) -> tuple[str, dict]:
    """The job folder that the environment ``variable`` names, and its ``job.json``."""
    job = os.environ[variable]
    with open(os.path.join(job, "job.json")) as fh:
        return job, json.load(fh)


def result_channel():
    """This process's stdout, kept as the result channel; file descriptor 1 then points at stderr,
    so what the run (and any code it runs) prints can never be read as a frame."""
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return results


def finish(results, head: dict, payload: bytes = b"") -> NoReturn:
    """The run's last frame, then exit at once (no ``atexit`` handler of code the run ran)."""
    write_frame(results, head, payload)
    results.close()
    os._exit(0)
