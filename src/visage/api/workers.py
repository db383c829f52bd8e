"""Several server processes on one port, each accepting on its own socket (``SO_REUSEPORT``).

Why not uvicorn's own ``--workers``: its processes share one listening socket, and when
connections arrive together the first process to wake accepts them all. Measured with
``bench_service.py``: 16 keep-alive clients all landed on one of two workers, which left half
the machine idle (361 instead of ~500 requests/s). With a socket per process the kernel spreads
new connections over the processes by a hash of the client's address and port.

A hash still spreads a handful of long-lived connections unevenly (11 and 5 of 16 happened),
and the busier worker then sets the tail latency. So the workers share a table of how many
requests each has in flight (:class:`WorkerLoads`); a worker with two or more above the least
busy one answers ``Connection: close``, and the client's next connection is hashed again.
Clients reconnect as HTTP/1.1 requires; a few such moves balance the load.

The supervisor starts the workers in their own process group (so a Ctrl-C reaches only the
supervisor, which stops each worker once, gracefully), restarts a worker that dies, and stops
them all on SIGINT or SIGTERM. Each worker builds its app from the ``VISAGE_*`` environment.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
STOP_GRACE_SECONDS = 30.0
# A worker this many in-flight requests above the least busy one sheds a connection.
SHED_MARGIN = 2


class WorkerLoads:
    """In-flight request counts of every worker, in shared memory; each worker writes only its own slot."""

    def __init__(self, counts: Any, index: int) -> None:
        self.counts, self.index = counts, index

    def started(self) -> None:
        self.counts[self.index] += 1

    def finished(self) -> None:
        self.counts[self.index] -= 1

    def overloaded(self) -> bool:
        """True when this worker is ``SHED_MARGIN`` or more requests busier than the least busy one."""
        counts = list(self.counts)
        return counts[self.index] >= min(counts) + SHED_MARGIN


_this_worker: WorkerLoads | None = None


def worker_loads() -> WorkerLoads | None:
    """The shared load table when this process is one of several workers, else None."""
    return _this_worker


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int, *, shared: bool = True) -> socket.socket:
    """A socket bound to the address; ``shared`` lets the other workers bind it too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(host: str, port: int, access_log: bool, counts: Any, index: int) -> None:
    import uvicorn

    global _this_worker
    os.setpgrp()  # a terminal's Ctrl-C goes to the supervisor, which stops us once
    counts[index] = 0  # a replaced worker starts with nothing in flight
    _this_worker = WorkerLoads(counts, index)
    config = uvicorn.Config("visage.api.app:create_app_from_environment", factory=True, host=host, port=port,
                            access_log=access_log)
    uvicorn.Server(config).run(sockets=[listening_socket(host, port)])


def run_workers(host: str, port: int, count: int, *, access_log: bool = True) -> None:
    """Serve with ``count`` processes until SIGINT or SIGTERM; a worker that dies is replaced."""
    # Fail here, clearly, if anything holds the port: bound without SO_REUSEPORT, this also refuses
    # a port that another server's workers share (which a shared bind would silently join).
    listening_socket(host, port, shared=False).close()
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    counts = context.Array("i", count, lock=False)  # each slot has one writer: its worker's event loop

    def start(index: int) -> BaseProcess:
        process = context.Process(target=_worker, args=(host, port, access_log, counts, index),
                                  name=f"visage-worker-{index}")
        process.start()
        return process

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start(index) for index in range(count)]
    try:
        while not stop.wait(0.5):
            for position, process in enumerate(processes):
                if not process.is_alive():
                    log.warning("server worker %s exited with %s; starting another", process.pid, process.exitcode)
                    processes[position] = start(position)
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(STOP_GRACE_SECONDS)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
