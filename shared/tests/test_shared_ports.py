"""The test helpers' ports: free, never from the kernel's ephemeral range, never handed out twice."""

import socket
from collections.abc import Iterator

import pytest

from leadrelay import testing
from leadrelay.testing import PortPicker, ephemeral_ports_start, free_port


def _listening(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def _two_free_ports_in_a_row() -> int:
    for _ in range(100):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


@pytest.fixture
def taken() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def test_free_ports_lie_below_the_ephemeral_range_and_are_never_repeated() -> None:
    ports = [free_port() for _ in range(200)]

    assert len(set(ports)) == len(ports)
    assert all(testing.LOWEST_PORT <= port < ephemeral_ports_start() for port in ports)


def test_a_free_port_can_be_listened_on() -> None:
    port = free_port()

    with _listening(port) as sock:
        assert sock.getsockname() == ("127.0.0.1", port)


def test_a_port_something_listens_on_is_skipped(taken: list[socket.socket]) -> None:
    first = _two_free_ports_in_a_row()
    taken.append(_listening(first))
    picker = PortPicker(first, first + 2)

    assert [picker() for _ in range(4)] == [first + 1] * 4


def test_a_range_with_no_free_port_falls_back_to_the_kernels_choice(taken: list[socket.socket]) -> None:
    port = free_port()
    taken.append(_listening(port))

    chosen = PortPicker(port, port + 1)()

    assert chosen != port
    with _listening(chosen):
        pass


def test_test_workers_share_the_range_without_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    shares = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        shares.append(testing.ports_for_this_process().ports)

    assert shares[0].start == testing.LOWEST_PORT
    assert shares[0].stop == shares[1].start
    assert shares[1].stop <= ephemeral_ports_start()
    assert len(shares[0]) == len(shares[1]) > 1_000
