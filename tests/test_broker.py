"""The embedded setup's broker (config/broker): Kombu's filesystem transport, except that a worker
never reads a message that is still being written, a file that cannot be decoded is skipped
instead of stopping the worker, each queue has a folder of its own, messages are taken by
priority, and a worker takes its queues in order (as on Redis)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
from kombu import Connection

QUEUE = "vigil.urgent"


def _connection(tmp_path, **options) -> Connection:
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    return Connection(
        "filesystem://",
        transport="config.broker:Transport",
        transport_options={
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
            **options,
        },
    )


@pytest.fixture
def channel(tmp_path):
    connection = _connection(tmp_path)
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
    # Left by an older version that wrote in place (in the data folder itself), or by a full
    # disk (in the queue's folder).
    from queue import Empty

    (tmp_path / "queue" / f"1_broken.{QUEUE}.msg").write_bytes(b"")
    (tmp_path / "queue" / QUEUE).mkdir()
    (tmp_path / "queue" / QUEUE / "0_0000000000000002_broken.msg").write_bytes(b'{"half": ')
    channel._put(QUEUE, {"page": 1})
    received = []
    with caplog.at_level(logging.ERROR, logger="config.broker"), contextlib.suppress(Empty):
        while True:
            received.append(channel._get(QUEUE))
    assert received == [{"page": 1}]
    assert len(caplog.records) == 2
    assert all("could not be decoded" in record.getMessage() for record in caplog.records)
    assert not list((tmp_path / "queue" / QUEUE).iterdir())
    assert [path.name for path in (tmp_path / "queue").iterdir()] == [QUEUE]


def test_messages_are_taken_in_the_order_they_were_written(channel, monkeypatch):
    # The transport takes files in name order; the clock passing a power of ten (999 ms to
    # 1,000 ms) must not put a later message first.
    clock = iter([0.998, 0.999, 1.0, 1.001, 10.0])
    with monkeypatch.context() as patched:
        patched.setattr("config.broker.monotonic", lambda: next(clock))
        for n in range(5):
            channel._put(QUEUE, {"n": n})
    assert [message["n"] for message in _drain(channel, 5)] == [0, 1, 2, 3, 4]


def _message(n: int, priority: int | None = None) -> dict:
    properties = {} if priority is None else {"priority": priority}
    return {"n": n, "properties": properties}


def test_a_lower_priority_number_is_taken_first_even_after_the_queue_was_listed(
    channel, monkeypatch
):
    # A storm's slices (priority 6) are waiting and one is being taken; a Sev 1's task
    # (no priority: 0) written meanwhile goes before the rest once the listing is renewed.
    import config.broker

    clock = itertools.count(1.0, 0.002)
    monkeypatch.setattr(config.broker, "monotonic", lambda: next(clock))
    for n in range(3):
        channel._put(QUEUE, _message(n, priority=6))
    assert channel._get(QUEUE)["n"] == 0
    channel._put(QUEUE, _message(10))
    channel._put(QUEUE, _message(11, priority=9))
    channel._put(QUEUE, _message(12, priority=3))
    monkeypatch.setattr(config.broker, "RELIST_SECONDS", 0.0)
    assert [message["n"] for message in _drain(channel, 5)] == [10, 12, 1, 2, 11]


def test_each_queue_has_a_folder_and_only_its_messages_are_counted(channel, tmp_path):
    channel._put(QUEUE, _message(1))
    channel._put(QUEUE, _message(2))
    channel._put("vigil.bulk", _message(3))
    assert sorted(path.name for path in (tmp_path / "queue").iterdir()) == [
        "vigil.bulk",
        QUEUE,
    ]
    assert (channel._size(QUEUE), channel._size("vigil.bulk"), channel._size("vigil")) == (2, 1, 0)
    assert channel._purge(QUEUE) == 2
    assert channel._size(QUEUE) == 0
    assert channel._get("vigil.bulk")["n"] == 3


def test_a_queue_name_that_is_not_a_plain_file_name_gets_a_folder_inside(channel, tmp_path):
    for name in ("../escape", ".hidden", "a/b", "x" * 300):
        channel._put(name, _message(1))
        assert channel._get(name)["n"] == 1
    assert not (tmp_path / "escape").exists()
    folders = [path for path in (tmp_path / "queue").iterdir()]
    assert len(folders) == 4
    assert all(path.name.startswith("q-") and path.is_dir() for path in folders)


def test_messages_an_earlier_version_wrote_are_taken_in_order(channel, tmp_path):
    # Kombu's names, written straight into the data folder: <ms>_<uuid>.<queue>.msg.
    from kombu.utils.json import dumps

    for n, written in enumerate([999, 1000, 20]):
        name = f"{written}_{n}.{QUEUE}.msg"
        (tmp_path / "queue" / name).write_text(dumps(_message(n)))
    (tmp_path / "queue" / "5_x.vigil.bulk.msg").write_text(dumps(_message(9)))
    assert [message["n"] for message in _drain(channel, 3)] == [2, 0, 1]
    assert (tmp_path / "queue" / "5_x.vigil.bulk.msg").exists()
    assert channel._get("vigil.bulk")["n"] == 9


def test_a_consumer_holding_a_stale_listing_skips_what_another_took(tmp_path, monkeypatch):
    # Both list the queue; the second takes the message the first would take next. The first
    # must skip it, not read it twice and not stop.
    import config.broker

    clock = itertools.count(1.0, 0.002)
    monkeypatch.setattr(config.broker, "monotonic", lambda: next(clock))
    first, second = (_connection(tmp_path) for _ in range(2))
    a, b = first.channel(), second.channel()
    for n in range(4):
        a._put(QUEUE, _message(n))
    assert a._get(QUEUE)["n"] == 0  # a has listed 1, 2, 3
    assert b._get(QUEUE)["n"] == 1  # b lists 1, 2, 3 and takes 1
    assert a._get(QUEUE)["n"] == 2  # a's 1 is gone: skipped
    assert b._get(QUEUE)["n"] == 3  # b's 2 is gone: skipped
    from queue import Empty

    for channel in (a, b):
        with pytest.raises(Empty):
            channel._get(QUEUE)
    first.release()
    second.release()


def test_two_consumers_of_one_queue_take_each_message_once(tmp_path):
    # Two threads racing for the same files. Which of them takes how many is the scheduler's
    # business (on a busy machine one can take them all); that none is taken twice or lost is
    # the transport's.
    connections = [_connection(tmp_path) for _ in range(2)]
    channels = [connection.channel() for connection in connections]
    count = 400
    for n in range(count):
        channels[0]._put(QUEUE, _message(n))
    taken: list[list] = [[], []]
    start = threading.Barrier(2)

    def drain(i: int) -> None:
        from queue import Empty

        start.wait()
        with contextlib.suppress(Empty):  # all written before: empty once is empty for good
            while True:
                taken[i].append(channels[i]._get(QUEUE))

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for connection in connections:
        connection.release()
    numbers = [message["n"] for message in taken[0] + taken[1]]
    assert sorted(numbers) == list(range(count))


def test_a_worker_takes_the_first_non_empty_of_its_queues(tmp_path):
    # As Redis with queue_order_strategy "priority": intake before bulk, whatever came first.
    from kombu import Consumer, Exchange, Producer, Queue

    queues = [Queue(name, Exchange(name), routing_key=name) for name in ("intake", "bulk")]
    connection = _connection(tmp_path, queue_order_strategy="priority", polling_interval=0)
    received: list[str] = []
    with connection:
        producer = Producer(connection.channel())
        for n in range(3):
            for queue in reversed(queues):
                producer.publish(
                    {"n": n}, exchange=queue.exchange, routing_key=queue.name, declare=[queue]
                )
        consumer = Consumer(connection.channel(), queues=queues, accept=["json"])

        def on_message(body, message):
            received.append(message.delivery_info["routing_key"])
            message.ack()

        consumer.register_callback(on_message)
        with consumer:
            for _ in range(6):
                connection.drain_events(timeout=5)
    assert received == ["intake"] * 3 + ["bulk"] * 3


def _embedded_environ(var_dir) -> dict[str, str]:
    """The environment of a fresh checkout's `make run`: no broker, Redis or database
    configured, Vigil's own settings, everything kept under ``var_dir``."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CELERY_BROKER_URL", "REDIS_URL", "DATABASE_URL", "CELERY_TASK_ALWAYS_EAGER")
    }
    environ.update(
        DJANGO_DEBUG="1", VIGIL_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="config.settings"
    )
    return environ


def test_the_embedded_default_uses_it(tmp_path):
    # The settings as a fresh checkout reads them: no broker or Redis configured.
    environ = _embedded_environ(tmp_path)
    code = "import config.settings as s; print(s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT)"
    result = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["filesystem://", "config.broker:Transport"]


def test_a_celery_worker_answers_a_remote_control_ping_through_it(tmp_path):
    # The broadcast goes out through the control folder to the worker's own queue, and the
    # reply comes back on a reply queue that is deleted afterwards: put, get and delete as a
    # real Celery worker and client use them.
    environ = _embedded_environ(tmp_path)
    command = "celery -A config worker --hostname ping@%h --queues vigil.intake --pool solo"
    worker = subprocess.Popen(
        [sys.executable, "-m", *command.split(), "--loglevel", "WARNING"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    code = (
        "import time\n"
        "from config.celery import app\n"
        "deadline = time.monotonic() + 60\n"
        "while time.monotonic() < deadline:\n"
        "    replies = app.control.ping(timeout=1)\n"
        "    if replies:\n"
        "        print(sorted(name.split('@')[0] for reply in replies for name in reply))\n"
        "        break\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=90
        )
    finally:
        worker.terminate()
        _, errors = worker.communicate(timeout=30)
    assert result.stdout.strip() == "['ping']", (result.stderr, errors.decode()[-2000:])
    queues = tmp_path / "broker" / "queue"
    # The reply queue's folder went with it; no message is left anywhere.
    assert not [path for path in queues.rglob("*") if path.is_file()]
    assert not [path.name for path in queues.iterdir() if "reply" in path.name]


def test_files_left_by_a_killed_writer_or_reader_are_removed_once_old(channel, tmp_path, caplog):
    from config import broker

    channel._put(QUEUE, {"page": 1})
    folder = tmp_path / "queue" / QUEUE
    old, fresh = time.time() - broker.LEFTOVER_SECONDS - 60, time.time()
    left = {
        ".0_0000000000000001_killed-writer.part": old,
        ".taken-0_0000000000000002_killed-reader.msg": old,
        ".0_0000000000000003_writing-now.part": fresh,
    }
    for name, when in left.items():
        (folder / name).write_bytes(b'{"half": ')
        os.utime(folder / name, (when, when))
    with caplog.at_level(logging.WARNING, logger="config.broker"):
        assert channel._size(QUEUE) == 1  # the hidden files are never messages
    remaining = sorted(path.name for path in folder.iterdir())
    assert remaining == [".0_0000000000000003_writing-now.part", *channel._names(QUEUE)]
    assert len(caplog.records) == 2
    assert all("left by a process that stopped" in r.getMessage() for r in caplog.records)
    assert channel._get(QUEUE) == {"page": 1}
