"""The embedded setup's broker (config/broker): Kombu's filesystem transport, except that a worker
never reads a message that is still being written, and a file that cannot be decoded is skipped
instead of stopping the worker."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
from kombu import Connection

QUEUE = "vigil.urgent"


@pytest.fixture
def channel(tmp_path):
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    connection = Connection(
        "filesystem://",
        transport="config.broker:Transport",
        transport_options={
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
        },
    )
    channel = connection.channel()
    yield channel
    connection.release()


def _drain(channel, until: int, seconds: float = 30.0) -> list:
    """Take messages as fast as possible until ``until`` came (or ``seconds`` passed)."""
    from queue import Empty

    received: list = []
    deadline = time.monotonic() + seconds
    while len(received) < until and time.monotonic() < deadline:
        with contextlib.suppress(Empty):
            received.append(channel._get(QUEUE))
    return received


def test_a_worker_reading_while_messages_are_written_gets_each_one_whole(channel, caplog):
    # Large messages, written by one thread while another takes them as fast as it can: the
    # reader must never see a file that is empty or half written.
    count, body = 200, "x" * 200_000
    writer = threading.Thread(
        target=lambda: [channel._put(QUEUE, {"n": n, "body": body}) for n in range(count)]
    )
    with caplog.at_level(logging.ERROR, logger="config.broker"):
        writer.start()
        received = _drain(channel, count)
        writer.join()
    assert sorted(message["n"] for message in received) == list(range(count))
    assert all(message["body"] == body for message in received)
    assert not caplog.records


def test_a_broken_message_file_is_skipped_not_fatal(channel, tmp_path, caplog):
    # Left by an older version that wrote in place, or by a full disk.
    from queue import Empty

    (tmp_path / "queue" / f"1_broken.{QUEUE}.msg").write_bytes(b"")
    (tmp_path / "queue" / f"2_broken.{QUEUE}.msg").write_bytes(b'{"half": ')
    channel._put(QUEUE, {"page": 1})
    received = []
    with caplog.at_level(logging.ERROR, logger="config.broker"), contextlib.suppress(Empty):
        while True:
            received.append(channel._get(QUEUE))
    assert received == [{"page": 1}]
    assert len(caplog.records) == 2
    assert all("could not be decoded" in record.getMessage() for record in caplog.records)
    assert not list((tmp_path / "queue").iterdir())


def test_messages_are_taken_in_the_order_they_were_written(channel, monkeypatch):
    # The transport takes files in name order; the clock passing a power of ten (999 ms to
    # 1,000 ms) must not put a later message first.
    clock = iter([0.998, 0.999, 1.0, 1.001, 10.0])
    monkeypatch.setattr("config.broker.monotonic", lambda: next(clock))
    for n in range(5):
        channel._put(QUEUE, {"n": n})
    assert [message["n"] for message in _drain(channel, 5)] == [0, 1, 2, 3, 4]


def test_the_embedded_default_uses_it(tmp_path):
    # The settings as a fresh checkout reads them: no broker or Redis configured.
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CELERY_BROKER_URL", "REDIS_URL", "DATABASE_URL")
    }
    environ.update(DJANGO_DEBUG="1", VIGIL_VAR_DIR=str(tmp_path))
    code = "import config.settings as s; print(s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT)"
    result = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["filesystem://", "config.broker:Transport"]
