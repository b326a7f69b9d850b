"""The embedded setup's broker: Kombu's filesystem transport, with whole messages only.

Kombu's filesystem transport writes a message straight into the queue folder: it creates the
file, then writes it. A worker listing the folder in between takes the file (it moves it away
and reads it) while it is still empty or half written. It then fails to decode it, and the
worker stops with an unrecoverable error; the writer goes on writing into a file nobody will
read, so the message is lost too. During an alert storm on ``make run`` this happened within
seconds, and the process manager then stopped every process.

Here a message is written under a hidden name (a leading dot: the transport reads only names
ending in ``.<queue>.msg``) and renamed into place when whole. A rename within one folder is
atomic, so a worker sees the whole message or nothing. A file that still cannot be decoded (left
by an older version, or by a full disk) is logged and skipped instead of stopping the worker; the
work it carried is queued again by the requeue sweeps, which look at the database rows, not at
the broker. Names are zero-padded so that the name order the transport reads in is the order of
writing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` onto ``queue``: written under a hidden name, then renamed into the
        queue folder."""
        # Zero-padded: the transport takes files in name order, and an unpadded 999 would sort
        # after 1000.
        name = f"{round(monotonic() * 1000):016d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        hidden = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(hidden, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(hidden, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(hidden)
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        """The next message of ``queue``; a file that cannot be decoded is skipped."""
        while True:
            try:
                return super()._get(queue)
            except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
                logger.error(
                    "Dropped a broker message file of queue %s that could not be decoded (%s); "
                    "the requeue sweeps queue its work again",
                    queue,
                    exc,
                )


class Transport(filesystem.Transport):
    Channel = Channel
