"""Wake-ups between processes sharing one SQLite file: a Unix datagram socket per process.

PostgreSQL has LISTEN/NOTIFY; SQLite has no channel of its own. Each process binds a socket in a
folder named after the database file; after a commit that staged outbox rows it sends an empty
datagram to every other socket there, and whichever process leads the relay wakes at once.
Sending never blocks and never fails a commit: a full or dead peer is skipped (a dead one's socket
is removed).
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def wake_folder(database: str) -> Path:
    """The folder of a SQLite database's wake-up sockets (short: socket paths are limited to ~100 bytes)."""
    digest = hashlib.sha256(os.path.abspath(database).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"leadrelay-wake-{digest}"


class ProcessWakeups:
    """This process's socket: `notify_others()` after a commit, `listen(wake)` in the relay."""

    def __init__(self, database: str) -> None:
        self._folder = wake_folder(database)
        self._folder.mkdir(mode=0o700, exist_ok=True)
        self._path = self._folder / f"{os.getpid()}.sock"
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # a previous process with the same pid
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._socket.bind(str(self._path))
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    def notify_others(self) -> None:
        """Tell every other process on this database that outbox rows were committed."""
        for peer in self._folder.glob("*.sock"):
            if peer == self._path:
                continue
            try:
                self._sender.sendto(b"", str(peer))
            except BlockingIOError:
                pass  # its queue is full of wake-ups already
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    peer.unlink()  # its process is gone
            except OSError as exc:
                logger.debug("wake-up not sent", extra={"error": repr(exc)})

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call `wake` for every datagram until cancelled."""
        loop = asyncio.get_running_loop()

        def drain() -> None:
            with contextlib.suppress(BlockingIOError):
                while True:
                    self._socket.recv(1)
            wake()

        loop.add_reader(self._socket.fileno(), drain)
        try:
            await asyncio.Event().wait()
        finally:
            loop.remove_reader(self._socket.fileno())

    def close(self) -> None:
        """Remove this process's socket."""
        self._socket.close()
        self._sender.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
