"""The embedded broker: kombu's filesystem transport with atomic message writes.

kombu's filesystem `_put` creates the message file in the queue folder and then writes into it;
a worker polling that folder can move and read the file in between, get an empty or partial
payload, and die with `Unrecoverable error: JSONDecodeError` (seen 19 ms after an enqueue). Here
the payload is written to a staging folder beside the queue folder and renamed into it, and
rename(2) within one filesystem is atomic: a message file is either absent or complete.

The exchange table (which queues an exchange routes to, a JSON file in the control folder) has
the same race in kombu: the first bind creates the file empty and only then locks and writes it,
so a second process binding or publishing at that moment reads "" and fails with JSONDecodeError
(the concurrent writer/reader test caught it, about 1 run in 2). Here a bind changes the table
under a lock on a separate lock file and replaces the file by rename, so readers in other processes
never see it partial. Inside one process kombu records a binding in its shared in-memory state
before writing the file, and a second connection then skips the bind; a process-wide lock around
bind and table reads keeps it from reading the table before the file is there (it would drop the
message as unroutable).

Why this and not kombu's SQLAlchemy transport over SQLite: it keeps the embedded default free of
another dependency and another database file under write contention with the app's own SQLite,
and costs one rename per message (bench/bench_broker.py measures put+get with and without it).
"""
from __future__ import annotations

import os
import threading
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


# bind (state + file) and table reads, one at a time per process; re-entrant: a bind reads the table
_TABLE_LOCK = threading.RLock()


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        staging = os.path.join(os.path.dirname(os.path.normpath(self.data_folder_out)), "staging")
        os.makedirs(staging, exist_ok=True)
        tmp = os.path.join(staging, name)
        try:
            with open(tmp, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            # No fsync: atomicity needs only the rename; a message lost to a power cut is re-sent
            # by jobs_recover (a queued job with no delivery), and fsync cost 3.4x per message.
            os.replace(tmp, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {name!r} to directory") from exc


    def queue_bind(self, *args, **kwargs):
        with _TABLE_LOCK:
            return super().queue_bind(*args, **kwargs)

    def get_table(self, exchange):
        file = self._exchange_file(exchange)
        try:
            with _TABLE_LOCK:
                data = file.read_bytes()  # replaced whole by _change_table: never partial
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot open {file}") from exc
        return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(data))]

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._change_table(exchange, lambda table: table if entry in table else [entry, *table])

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        # the base of kombu's filesystem Channel (skipping its in-place rewrite of the table)
        super(filesystem.Channel, self)._delete(queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._change_table(exchange, lambda table: [q for q in table if q != entry])

    def _change_table(self, exchange, change) -> None:
        """Read, change and atomically replace an exchange's table, one process at a time."""
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(file.with_name(file.name + ".lock"), "ab") as guard:
                filesystem.lock(guard, filesystem.LOCK_EX)
                try:
                    table = self.get_table(exchange)
                    new = change(table)
                    if new == table and file.exists():
                        return
                    tmp = file.with_name(f"{file.name}.{uuid.uuid4().hex}.tmp")
                    tmp.write_bytes(str_to_bytes(dumps(new)))
                    os.replace(tmp, file)
                finally:
                    filesystem.unlock(guard)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot open {file}") from exc


class Transport(filesystem.Transport):
    Channel = Channel
