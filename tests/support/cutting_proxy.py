"""A loopback TCP proxy that cuts the link after given numbers of bytes sent upstream: a flaky office line.

Counted across every connection in order, each cut once: with cuts [40 MiB, 100 MiB] the
connection carrying the 40th MiB is closed there, the next one carrying the 100th likewise,
and after the last cut everything is forwarded untouched. With `outage_seconds`, the
link then stays down that long: every open connection is closed with the one cut and
new ones are closed at once, so that a browser's transparent resend (on another pooled
connection) fails too, as on a real line that drops.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class CuttingProxy:
    def __init__(self, target_port: int, cuts: list[int], outage_seconds: float = 0.0):
        self.target_port = target_port
        self.outage_seconds = outage_seconds
        self.down_until = 0.0
        self.cuts = sorted(cuts)
        self.cut = 0  # cuts made so far
        self.sent = 0  # bytes forwarded upstream, all connections together
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        self._closing = False
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        """False while the line is down after a cut."""
        return time.monotonic() >= self.down_until

    def close(self) -> None:
        self._closing = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if time.monotonic() < self.down_until:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _drop_all(self) -> None:
        with self._lock:
            every, self._open = list(self._open), set()
        for s in every:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if counted:
                    with self._lock:
                        limit = self.cuts[self.cut] if self.cut < len(self.cuts) else None
                        if limit is not None and self.sent + len(data) >= limit:
                            data = data[: limit - self.sent]
                            self.sent, self.cut = limit, self.cut + 1
                            self.down_until = time.monotonic() + self.outage_seconds
                            cut_now = True
                        else:
                            self.sent += len(data)
                            cut_now = False
                    if cut_now:
                        dst.sendall(data)
                        if self.outage_seconds:
                            self._drop_all()
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
