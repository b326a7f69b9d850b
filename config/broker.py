"""The embedded setup's broker: Kombu's filesystem transport, with whole messages only, a folder
per queue, message priorities and the queue order of Redis.

**Whole messages.** Kombu's filesystem transport writes a message straight into the queue
folder: it creates the file, then writes it. A worker listing the folder in between takes the
file (it moves it away and reads it) while it is still empty or half written. It then fails to
decode it, and the worker stops with an unrecoverable error; the writer goes on writing into a
file nobody will read, so the message is lost too. During an alert storm on ``make run`` this
happened within seconds, and the process manager then stopped every process. Here a message is
written under a hidden name (a leading dot, never listed) and renamed into place when whole. A
rename within one folder is atomic, so a worker sees the whole message or nothing. A file that
still cannot be decoded (left by an older version, or by a full disk) is logged and skipped
instead of stopping the worker; the work it carried is queued again by the requeue sweeps, which
look at the database rows, not at the broker.

**A folder per queue, listed once for many messages.** Kombu lists and sorts the one folder of
every queue's messages for each message it takes, and for each empty queue it looks at: with
900 pages waiting on ``vigil.urgent`` during an alert storm, the general worker spent about
1 ms per look at each of its four queues, and taking 9,000 messages cost 6 to 12 ms each.
Here each queue has its own folder (``<data folder>/<queue>/``); a consumer lists it, sorted,
and takes names from that listing until it is used up or :data:`RELIST_SECONDS` old. A message
is taken by renaming it out of the folder, so when two consumers hold the same name only one
gets it and the other goes on to the next.

**Priorities.** A message's name starts with its priority (``properties.priority``, 0 to 9;
none is 0), then the time it was written: a queue's messages are taken lowest priority number
first, then in order of writing, as Redis takes Kombu's priority steps (0 first). The listing
is renewed at least every :data:`RELIST_SECONDS`, so a message with a lower number waits at
most that long behind the names already listed.

**Queue order.** With the transport option ``queue_order_strategy: "priority"`` (set in
``config/settings.py`` as for Redis), a worker consuming several queues takes the first
non-empty one in the order it consumes them (``--queues``), instead of Kombu's round robin.

**Leftovers.** A process killed between writing a message and renaming it into place leaves its
hidden ``.part`` file; one killed between taking a message and removing it leaves a hidden
``.taken-`` file. Neither is ever listed, and the message is lost either way (the requeue sweeps
queue its work again). A consumer that lists a queue removes such files once they are
:data:`LEFTOVER_SECONDS` old, looking at most every :data:`LEFTOVER_CHECK_SECONDS`.

Messages written by an earlier version straight into the data folder
(``<time>_<uuid>.<queue>.msg``) are moved into their queue's folder when a consumer first lists
that queue.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections import deque
from queue import Empty
from time import monotonic, time

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.scheduling import FairCycle

logger = logging.getLogger(__name__)

# How long a consumer takes names from one listing of a queue's folder before it lists it again
# (so a message of a higher priority written meanwhile is seen).
RELIST_SECONDS = 0.1
SUFFIX = ".msg"
# A hidden file this old was left by a process that stopped while writing or taking a message
# (either takes milliseconds); a queue's folder is looked over for them this often.
LEFTOVER_SECONDS = 600.0
LEFTOVER_CHECK_SECONDS = 60.0
_SAFE_QUEUE = re.compile(r"\A[A-Za-z0-9_@-][A-Za-z0-9._@-]*\Z")


def queue_folder_name(queue: str) -> str:
    """The folder of ``queue``'s messages: its name, or a digest of a name that is not a plain
    file name (a path separator, a leading dot, ...)."""
    if _SAFE_QUEUE.match(queue) and len(queue) <= 200:
        return queue
    return "q-" + hashlib.sha256(queue.encode()).hexdigest()[:40]


def message_priority(payload: dict) -> int:
    try:
        priority = int((payload.get("properties") or {}).get("priority") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0
    return min(9, max(0, priority))


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


class _PriorityCycle(FairCycle):
    """Looks at the queues in their order every time, from the first."""

    def get(self, callback, **kwargs):
        self.pos = 0
        return super().get(callback, **kwargs)


class Channel(filesystem.Channel):
    def __init__(self, *args, **kwargs):
        # queue -> (names still to try from the last listing, when it was listed)
        self._listed: dict[str, tuple[deque, float]] = {}
        self._legacy_checked: set[str] = set()
        # queue -> when its folder was last looked over for leftovers (monotonic)
        self._leftovers_checked: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    # --- writing ---------------------------------------------------------------------------

    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` onto ``queue``: written under a hidden name in the queue's folder,
        then renamed into place."""
        folder = os.path.join(self.data_folder_out, queue_folder_name(queue))
        # Zero-padded: names are taken in order, and an unpadded 999 would sort after 1000.
        name = f"{message_priority(payload)}_{round(monotonic() * 1000):016d}_{uuid.uuid4()}"
        final = os.path.join(folder, name + SUFFIX)
        hidden = os.path.join(folder, f".{name}.part")
        data = str_to_bytes(dumps(payload))
        try:
            try:
                _write(hidden, data)
            except FileNotFoundError:
                # The queue's first message (or its folder was deleted with the queue).
                os.makedirs(folder, exist_ok=True)
                _write(hidden, data)
            os.replace(hidden, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(hidden)
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    # --- reading ---------------------------------------------------------------------------

    def _folder_in(self, queue: str) -> str:
        return os.path.join(self.data_folder_in, queue_folder_name(queue))

    def _names(self, queue: str) -> list[str]:
        """The message files of ``queue``'s folder, in the order they are taken."""
        folder = self._folder_in(queue)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        self._remove_leftovers(queue, folder, names)
        return sorted(name for name in names if name.endswith(SUFFIX) and name[0] != ".")

    def _remove_leftovers(self, queue: str, folder: str, names: list[str]) -> None:
        now = monotonic()
        last = self._leftovers_checked.get(queue)
        if last is not None and now - last < LEFTOVER_CHECK_SECONDS:
            return
        self._leftovers_checked[queue] = now
        oldest = time() - LEFTOVER_SECONDS
        for name in names:
            if not (name.startswith(".taken-") or (name[:1] == "." and name.endswith(".part"))):
                continue
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.stat(path).st_mtime < oldest:
                    os.remove(path)
                    logger.warning(
                        "Removed %s from queue %s, left by a process that stopped while writing "
                        "or taking a message; the requeue sweeps queue its work again",
                        name,
                        queue,
                    )

    def _next_name(self, queue: str) -> str:
        listed = self._listed.get(queue)
        now = monotonic()
        if listed is None or not listed[0] or now - listed[1] > RELIST_SECONDS:
            if queue not in self._legacy_checked:
                self._legacy_checked.add(queue)
                self._adopt_legacy(queue)
            listed = (deque(self._names(queue)), now)
            self._listed[queue] = listed
        if not listed[0]:
            raise Empty()
        return listed[0].popleft()

    def _get(self, queue):
        """The next message of ``queue``; a file that cannot be decoded is skipped."""
        folder = self._folder_in(queue)
        processed = self.processed_folder if self.store_processed else folder
        while True:
            name = self._next_name(queue)
            source = os.path.join(folder, name)
            # Taken by renaming it away: of two consumers holding the same name, one gets it.
            taken = os.path.join(processed, f".taken-{name}" if processed == folder else name)
            try:
                os.rename(source, taken)
            except FileNotFoundError:
                continue
            except OSError:
                # Another file system (store_processed elsewhere): Kombu's own move.
                try:
                    taken = shutil.move(source, processed)
                except OSError:
                    continue
            try:
                with open(taken, "rb") as handle:
                    payload = handle.read()
                if not self.store_processed:
                    os.remove(taken)
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            try:
                return loads(bytes_to_str(payload))
            except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
                logger.error(
                    "Dropped a broker message file of queue %s that could not be decoded (%s); "
                    "the requeue sweeps queue its work again",
                    queue,
                    exc,
                )

    def _adopt_legacy(self, queue: str) -> None:
        """Move the messages of ``queue`` an earlier version wrote into the data folder itself
        into the queue's folder, keeping their order (priority 0)."""
        ending = f".{queue}{SUFFIX}"
        try:
            names = [n for n in os.listdir(self.data_folder_in) if n.endswith(ending)]
        except FileNotFoundError:
            return
        if not names:
            return
        folder = self._folder_in(queue)
        os.makedirs(folder, exist_ok=True)
        for name in names:
            stem = name[: -len(ending)]
            written, _, rest = stem.partition("_")
            order = f"{int(written):016d}" if written.isdigit() else "0" * 16
            with contextlib.suppress(OSError):
                os.rename(
                    os.path.join(self.data_folder_in, name),
                    os.path.join(folder, f"0_{order}_{rest or uuid.uuid4()}{SUFFIX}"),
                )

    def _size(self, queue):
        """The number of messages waiting in ``queue``."""
        return len(self._names(queue))

    def _purge(self, queue):
        """Remove every message of ``queue``; how many were removed."""
        self._listed.pop(queue, None)
        count = 0
        folder = self._folder_in(queue)
        for name in self._names(queue):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                count += 1
        return count

    def _delete(self, queue, *args, **kwargs):
        """Delete ``queue`` (a reply queue of a remote control command): its folder goes too
        when nothing is left in it."""
        super()._delete(queue, *args, **kwargs)
        self._listed.pop(queue, None)
        with contextlib.suppress(OSError):
            os.rmdir(self._folder_in(queue))

    # --- the order of a worker's queues ----------------------------------------------------

    def _reset_cycle(self):
        if self.transport_options.get("queue_order_strategy") == "priority":
            self._cycle = _PriorityCycle(self._get_and_deliver, self._active_queues, Empty)
        else:
            super()._reset_cycle()


class Transport(filesystem.Transport):
    Channel = Channel
