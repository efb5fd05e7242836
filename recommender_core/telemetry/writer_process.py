"""The telemetry writer out of the caller's interpreter: a child process fed batches through a pipe.

``TelemetryCallback`` keeps its bounded queue and batch writer thread (flush and close deadlines,
backoff, the bound on memory stay as they were), but the thread's sink is a ``WriterProcess``: it
encodes each batch as one JSON frame (``telemetry.writer.encode_frame``), sends it down the child's
stdin after a line of the batch's UTC days (the partitions it needs), and waits for the child's
answer (the number written, or the error). The child passes the frame's text to the database as
the one parameter of one ``INSERT ... SELECT`` (``write_frame``): the server unpacks it, so neither
process builds a Python object per event after the caller's encoding. The caller's side costs one
list per event and a ``json.dumps`` per batch (C code), and waits for the answer in ``os.read``,
which releases the interpreter lock. The child lowers its own scheduling priority
(``CHILD_NICENESS``), so on a busy machine the caller's threads run first.

Why a pipe to a child of our own and this format (docs/performance.md has the figures):
- Frames are JSON of plain values (str, int, float, bool, None, lists; times as UTC text exact to
  the microsecond): nothing is unpickled or unmarshalled on either side, whatever reaches the pipe.
  The pipe is anonymous and private to the two processes.
- The first frame carries the database URL, so no credential ever appears in argv (``ps``) or in
  the environment of other children.
- The child runs in its own session, so a Ctrl-C meant for the caller does not kill the writer
  before the caller's exit flush; it ends when its stdin closes (the caller closed it or died).

A failure of the child (it died, or never started) raises ``WriterProcessError`` into the batch
writer, which keeps the batch and backs off as for any store failure; the next attempt starts a new
child.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, date, datetime
from typing import IO, Any

from .events import TelemetryRecord
from .writer import PartialWrite, encode_batch, encode_row

__all__ = ["PartialWriteError", "WriterProcess", "WriterProcessError", "main"]

_HEADER = struct.Struct(">I")
_FIELDS = tuple(f.name for f in fields(TelemetryRecord))
_STARTED, _ENDED, _TAGS = _FIELDS.index("started_at"), _FIELDS.index("ended_at"), _FIELDS.index("tags")
# A frame larger than this is a broken stream, not a batch (500 events are about 100 KB).
_MAX_FRAME = 256 * 1024 * 1024
# The child's scheduling priority, added to the caller's: on a busy machine the caller's threads
# (LiteLLM's calls and hooks) get the CPU first; the queue absorbs the writer's delay.
CHILD_NICENESS = 10


class WriterProcessError(ConnectionError):
    """The writer process failed to write a batch, or is not there to write it."""


def _encode(record: TelemetryRecord) -> list[Any]:
    return encode_row(record)


def _decode(values: Sequence[Any]) -> TelemetryRecord:
    """A frame row back into a record (tests: the frame format loses nothing)."""
    row = list(values)
    row[_STARTED] = datetime.fromisoformat(row[_STARTED]).replace(tzinfo=UTC)
    if row[_ENDED] is not None:
        row[_ENDED] = datetime.fromisoformat(row[_ENDED]).replace(tzinfo=UTC)
    row[_TAGS] = tuple(row[_TAGS])
    return TelemetryRecord(*row)


def _message(records: Sequence[TelemetryRecord]) -> str:
    """What the caller sends for one batch: the days of its start times, a newline, then its frame.

    The days are read off the rows the caller encodes anyway (a set of 500 short strings), so the
    child never parses a frame to find the partitions it needs: that ``json.loads`` took a tenth of
    the child's time per batch. The JSON frame holds no newline (``json.dumps`` escapes them).
    """
    frame, days = encode_batch(records)
    return ",".join(sorted(days)) + "\n" + frame


def _unpack(message: str) -> tuple[list[date], str]:
    """A batch message back into (days, frame); ValueError when it is not one."""
    head, newline, frame = message.partition("\n")
    if not newline:
        raise ValueError("a batch message without its days line")
    return [date.fromisoformat(day) for day in head.split(",") if day], frame


def _send(stream: IO[bytes], payload: Any) -> None:
    _send_text(stream, json.dumps(payload, separators=(",", ":")))


def _send_text(stream: IO[bytes], text: str) -> None:
    data = text.encode()
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int) -> Any:
    """The next frame's value; None at the end of the stream."""
    data = _receive_bytes(fd)
    return None if data is None else json.loads(data)


def _receive_bytes(fd: int) -> bytes | None:
    """The next frame's bytes; None at the end of the stream."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise WriterProcessError(f"telemetry writer pipe: a frame of {size} bytes is not a batch")
    return _read_exact(fd, size)


class PartialWriteError(WriterProcessError, PartialWrite):
    """Some lanes of a batch were written, others failed: ``unwritten`` goes back to the queue."""


class WriterProcess:
    """A batch sink that writes through child processes: ``sink(batch) -> events written``.

    ``database_url`` is the store the children open (``auto_migrate`` as ``Store``'s). ``python`` is
    the interpreter to start (default: this one). ``lanes`` children write one batch side by side:
    a batch of at least ``lane_min`` events per lane is cut into that many contiguous parts, all
    sent before any answer is read, so the parts are written by as many database sessions at once.
    A smaller batch goes to the first child alone (the others start only when a backlog arrives).
    """

    def __init__(self, database_url: str, *, auto_migrate: bool = False, python: str | None = None,
                 lanes: int = 1, lane_min: int = 500) -> None:
        if lanes < 1 or lane_min < 1:
            raise ValueError("lanes and lane_min must be at least 1")
        self._url = database_url
        self._auto_migrate = auto_migrate
        self._python = python or sys.executable
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * lanes
        self._lane_min = lane_min
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The first child's process id while it runs (None before the first batch and after close)."""
        pids = self.pids
        return pids[0] if pids else None

    @property
    def pids(self) -> list[int]:
        """The process ids of the children running now."""
        return [p.pid for p in self._procs if p is not None and p.poll() is None]

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, this module, no shell
            [self._python, "-m", "recommender_core.telemetry.writer_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, start_new_session=True)
        assert proc.stdin is not None  # noqa: S101 - PIPE given
        _send(proc.stdin, {"database_url": self._url, "auto_migrate": self._auto_migrate})
        return proc

    def _stop(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def _lane(self, index: int) -> subprocess.Popen[bytes]:
        """The lane's running child, started (or replaced) if needed; under ``_lock``."""
        proc = self._procs[index]
        if proc is None or proc.poll() is not None:
            if proc is not None:
                self._stop(proc, 0)
            proc = self._procs[index] = self._start()
        return proc

    def _lost(self, proc: subprocess.Popen[bytes]) -> str:
        with self._lock:
            self._procs = [None if p is proc else p for p in self._procs]
        self._stop(proc, 0)
        return f"the telemetry writer process exited (code {proc.returncode})"

    def __call__(self, batch: Sequence[TelemetryRecord]) -> int:
        count = max(1, min(len(self._procs), len(batch) // self._lane_min))
        size = -(-len(batch) // count)
        parts = [batch[i:i + size] for i in range(0, len(batch), size)] or [batch]
        frames = [_message(part) for part in parts]  # any error building a row happens before the pipe
        with self._lock:
            if self._closed:
                raise WriterProcessError("the telemetry writer process is closed")
            procs = [self._lane(i) for i in range(len(parts))]
        errors: list[str | None] = [None] * len(parts)
        for i, (proc, frame) in enumerate(zip(procs, frames, strict=True)):
            try:  # every part is sent before any answer is read: the children write side by side
                assert proc.stdin is not None  # noqa: S101 - PIPE given
                _send_text(proc.stdin, frame)
            except (OSError, ValueError):  # broken pipe, closed stream
                errors[i] = self._lost(proc)
        written = 0
        for i, proc in enumerate(procs):
            if errors[i] is not None:
                continue
            assert proc.stdout is not None  # noqa: S101 - PIPE given
            try:
                answer = _receive(proc.stdout.fileno())
            except (OSError, ValueError):
                answer = None
            if answer is None:
                errors[i] = self._lost(proc)
                continue
            status, value = answer
            if status == "ok":
                written += int(value)
            else:
                errors[i] = str(value)
        failed = [i for i, error in enumerate(errors) if error is not None]
        if not failed:
            return written
        message = str(errors[failed[0]])
        if len(failed) == len(parts):
            raise WriterProcessError(message)
        raise PartialWriteError(message, written=written,
                                unwritten=[r for i in failed for r in parts[i]])

    def close(self, timeout: float = 5.0) -> None:
        """Stop the children: close their stdin, wait up to ``timeout`` seconds, then kill; idempotent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            procs, self._procs = self._procs, [None] * len(self._procs)
        for proc in procs:
            if proc is not None:
                self._stop(proc, deadline - time.monotonic())


def main() -> int:
    """The child: open the store named by the first frame, then write every batch that arrives."""
    import logging

    from ..redact import first_line
    from ..store import Store
    from .writer import write_frame

    try:
        os.nice(CHILD_NICENESS)
    except OSError:  # not permitted here: the writer runs at the caller's priority
        pass
    logging.basicConfig(level=logging.WARNING, format="recsys telemetry writer: %(message)s")
    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer
    hello = _receive(stdin)
    if not isinstance(hello, dict):
        return 0
    store = Store(str(hello["database_url"]), auto_migrate=bool(hello.get("auto_migrate")))
    try:
        while True:
            frame = _receive_bytes(stdin)
            if frame is None:
                return 0
            try:  # the frame goes to the server as it came: no Python object per event here
                days, rows = _unpack(frame.decode())
                written = write_frame(store, rows, durable=False, days=days)
            except Exception as exc:  # any failure goes back to the caller's writer, which retries
                _send(stdout, ("error", f"{type(exc).__name__}: {first_line(exc)}"))
            else:
                _send(stdout, ("ok", written))
    finally:
        store.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
