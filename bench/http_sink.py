"""The local HTTP server the outbox bench's webhooks go to: it answers 200 at once and notes
when each POST arrived (``Sink.times``)."""

from __future__ import annotations

import http.server
import socket
import threading
import time


class Sink:
    """A local HTTP server answering 200 at once and noting when each POST arrived: Python's
    ``http.server`` (``--sink http.server``), or a lean one (``--sink lean``, the default)."""

    def __init__(self, kind: str = "lean") -> None:
        self.times: list[float] = []
        self.kind = kind
        if kind == "lean":
            self._socket = socket.create_server(("127.0.0.1", 0), backlog=64)
            threading.Thread(target=self._accept, daemon=True).start()
            return
        lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The handler writes the status line and headers, then the body: two small
            # segments. With Nagle's algorithm the second waits for the client's delayed ACK
            # of the first (about 40 ms on Linux), a stall of this sink's making that no
            # provider answering in one write shows. TCP_NODELAY, as HTTP servers set it.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    sink.times.append(time.time())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._socket = self.server.socket
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # The lean server. The sink runs on the two CPUs the worker, PostgreSQL and Redis share,
    # and a one-row delivery waits for its answer: ``http.server`` parses each request's
    # headers with the email package and writes its answer in two writes, about 0.15 ms of
    # this bench's own CPU inside every delivery measured (a provider's own work is on its
    # machines). This one reads a request up to its blank line, takes the body's
    # Content-Length, and answers in one write; a connection keeps going (keep-alive). A
    # request without a Content-Length (chunked) gets 411 and the connection is closed.
    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
    REFUSED = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def _accept(self) -> None:
        while True:
            connection, _ = self._socket.accept()
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    more = connection.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                length = None
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length is None:
                    connection.sendall(self.REFUSED)
                    return
                while len(data) < length:
                    more = connection.recv(65536)
                    if not more:
                        return
                    data += more
                data = data[length:]
                # list.append is atomic under the GIL: the sink's threads need no lock.
                self.times.append(time.time())
                connection.sendall(self.ANSWER)

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"
