"""The telemetry writer out of the caller's interpreter: a child process fed batches through a pipe.

``TelemetryCallback`` keeps its bounded queue and batch writer thread (flush and close deadlines,
backoff, the bound on memory stay as they were), but the thread's sink is a ``WriterProcess``: it
encodes each batch as one JSON frame (``telemetry.writer.encode_frame``), sends it down the child's
stdin and waits for the child's answer (the number written, or the error). The child passes the
frame's text to the database as the one parameter of one ``INSERT ... SELECT`` (``write_frame``):
the server unpacks it, so neither process builds a Python object per event after the caller's
encoding. The caller's side costs one list per event and a ``json.dumps`` per batch (C code), and
waits for the answer in ``os.read``, which releases the interpreter lock. The child lowers its own
scheduling priority (``CHILD_NICENESS``), so on a busy machine the caller's threads run first.

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
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import IO, Any

from .events import TelemetryRecord
from .writer import encode_frame, encode_row

__all__ = ["WriterProcess", "WriterProcessError", "main"]

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


class WriterProcess:
    """A batch sink that writes through a child process: ``sink(batch) -> events written``.

    ``database_url`` is the store the child opens (``auto_migrate`` as ``Store``'s). ``python`` is
    the interpreter to start (default: this one).
    """

    def __init__(self, database_url: str, *, auto_migrate: bool = False, python: str | None = None) -> None:
        self._url = database_url
        self._auto_migrate = auto_migrate
        self._python = python or sys.executable
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first batch and after close)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

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

    def __call__(self, batch: Sequence[TelemetryRecord]) -> int:
        frame = encode_frame(batch)  # any error building a row happens before the pipe
        with self._lock:
            if self._closed:
                raise WriterProcessError("the telemetry writer process is closed")
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    self._stop(self._proc, 0)
                self._proc = self._start()
            proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 - PIPEs given
        try:
            _send_text(proc.stdin, frame)
            answer = _receive(proc.stdout.fileno())
        except (OSError, ValueError) as exc:  # broken pipe, closed stream
            answer = None
            error: BaseException | None = exc
        else:
            error = None
        if answer is None:
            with self._lock:
                if self._proc is proc:
                    self._proc = None
            self._stop(proc, 0)
            raise WriterProcessError(f"the telemetry writer process exited (code {proc.returncode})") from error
        status, value = answer
        if status != "ok":
            raise WriterProcessError(str(value))
        return int(value)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child: close its stdin, wait up to ``timeout`` seconds, then kill it; idempotent."""
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
        if proc is not None:
            self._stop(proc, timeout)


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
                written = write_frame(store, frame.decode(), durable=False)
            except Exception as exc:  # any failure goes back to the caller's writer, which retries
                _send(stdout, ("error", f"{type(exc).__name__}: {first_line(exc)}"))
            else:
                _send(stdout, ("ok", written))
    finally:
        store.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
