"""The unit-test guard of tests/conftest.py: a test without a service marker cannot open a socket."""

from __future__ import annotations

import socket

import pytest


def test_a_unit_test_that_connects_a_socket_fails():
    with pytest.raises(AssertionError, match="opened a socket"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_a_unit_test_that_binds_a_socket_fails():
    with socket.socket() as sock, pytest.raises(AssertionError, match="opened a socket"):
        sock.bind(("127.0.0.1", 0))


@pytest.mark.network
def test_a_test_marked_network_may_bind():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[1] > 0
