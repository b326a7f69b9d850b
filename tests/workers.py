"""Real-process test infrastructure: a Celery worker (and beat) started as subprocesses against
the test database and the Redis broker, local HTTP and SMTP sinks that record what arrived, and
a guard that refuses any network connection leaving this machine.

Use from a test module by importing the fixtures::

    from tests.workers import celery_worker, http_sink, no_external_network  # noqa: F401
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

# --- no network beyond this machine -------------------------------------------------------------


def _is_local(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_external_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a non-loopback address fails at once, so a channel misconfigured in a
    test can never reach a real provider."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(address: Any) -> None:
        if not _is_local(address):
            raise ConnectionRefusedError(f"tests may not connect to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


# --- an HTTP sink ---------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    # Set to hold the request open until the event is set (or the client goes away).
    hold: threading.Event | None = None


class HttpSink:
    """A threaded local HTTP server that records every request and answers from a script of
    replies (then ``default``)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self._lock = threading.Lock()
        self._released = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with sink._lock:
                    sink.received.append(
                        Received(
                            method=self.command,
                            path=self.path,
                            headers=dict(self.headers.items()),
                            body=body,
                            at=time.monotonic(),
                        )
                    )
                    reply = sink.script.pop(0) if sink.script else sink.default
                if reply.hold is not None:
                    while not (reply.hold.is_set() or sink._released.is_set()):
                        reply.hold.wait(0.1)
                payload = reply.body
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload)
                if isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(payload)

            do_POST = do_GET = do_PUT = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def start(self) -> HttpSink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    sink = HttpSink().start()
    yield sink
    sink.stop()


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


# --- real Celery processes ------------------------------------------------------------------------


def database_url() -> str:
    """A URL for the database this test process uses (pytest-django's ``test_`` database)."""
    from django.db import connection

    conf = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError("A real worker shares the test database only on PostgreSQL.")
    user = quote(conf.get("USER") or "", safe="")
    password = quote(conf.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{quote(conf['NAME'], safe='')}"


def purge_broker() -> None:
    """Drop every queued, reserved and unacknowledged message (and cached heartbeats) left in
    the test Redis database by earlier tests."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for pattern in ("vigil*", "unacked*", "_kombu*", "celery*"):
        keys = list(client.scan_iter(match=pattern, count=500))
        if keys:
            client.delete(*keys)
    cache_client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(cache_client.scan_iter(match="vigil:*", count=500))
    if keys:
        cache_client.delete(*keys)


@dataclass
class CeleryProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> list[int]:
        """Process ids of this process's children (the worker's pool processes), from /proc."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid:
                found.append(int(entry))
        return found

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool children at once, as
        when a machine dies or the OOM killer strikes."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


class CeleryLauncher:
    """Starts ``celery -A config worker`` / ``beat`` subprocesses sharing the test database and
    broker; stops them all at the end of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[CeleryProcess] = []

    def env(self, extra: dict[str, str] | None) -> dict[str, str]:
        from django.conf import settings

        env = dict(os.environ)
        # Handed this process's database and Redis URLs as they are: tests.settings must not
        # work out an xdist worker's own Redis database from them a second time.
        env.pop("PYTEST_XDIST_WORKER", None)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": database_url(),
                "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
                "REDIS_URL": settings.REDIS_URL,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
                "PYTHONUNBUFFERED": "1",
                # Connections are not kept between tasks: the test flushes tables between tests.
                "DJANGO_CONN_MAX_AGE": "0",
            }
        )
        env.update(extra or {})
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None) -> CeleryProcess:
        log_path = self.tmp_path / f"{name}-{len(self.processes)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", *args],
                cwd=ROOT,
                env=self.env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = CeleryProcess(name=name, process=process, log_path=log_path)
        self.processes.append(started)
        return started

    def worker(
        self, env: dict[str, str] | None = None, *, concurrency: int = 1, ready: bool = True
    ) -> CeleryProcess:
        node = f"vigil-test-{uuid.uuid4().hex[:8]}@%h"
        worker = self._spawn(
            "worker",
            [
                "worker",
                "--queues",
                ",".join(settings.VIGIL_ALL_QUEUES),
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--hostname",
                node,
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            env,
        )
        if ready:
            wait_for(
                lambda: " ready." in worker.log() or not worker.alive,
                timeout=60,
                what="the Celery worker to start",
            )
            if not worker.alive:
                raise RuntimeError("The Celery worker exited:\n" + worker.log())
        return worker

    def beat(self, env: dict[str, str] | None = None) -> CeleryProcess:
        schedule = self.tmp_path / f"celerybeat-{uuid.uuid4().hex[:8]}"
        return self._spawn(
            "beat",
            ["beat", "--schedule", str(schedule), "--loglevel", "INFO", "--max-interval", "1"],
            env,
        )

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.log()[-6000:]}" for p in self.processes)


@pytest.fixture
def celery_worker(tmp_path: Path) -> Iterator[CeleryLauncher]:
    """A launcher of real worker and beat processes. Needs Redis, and PostgreSQL: the worker
    must see the rows the test commits, so mark the test
    ``@pytest.mark.django_db(transaction=True, serialized_rollback=True)``."""
    from django.conf import settings

    if not urlparse(settings.CELERY_BROKER_URL).scheme.startswith("redis"):
        reason = "needs a Redis broker (CELERY_BROKER_URL=redis://...)"
        if os.environ.get("VIGIL_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + ", but VIGIL_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(reason)
    purge_broker()
    launcher = CeleryLauncher(tmp_path)
    yield launcher
    launcher.stop_all()
    # Shown by pytest only when the test failed.
    print(launcher.logs())
    purge_broker()
