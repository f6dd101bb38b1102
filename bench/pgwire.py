"""A minimal PostgreSQL client (standard library only) for holding many cheap connections.

Speaks just enough of the v3 frontend/backend protocol for the benchmark: a startup
message with `trust` authentication, simple queries, and leaving a query running
(`pg_sleep`) without reading its answer. One socket per connection, no threads.
"""

import socket
import struct


class PgError(Exception):
    pass


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise PgError("connection closed by the server")
        buf += chunk
    return bytes(buf)


def _read_message(sock):
    head = _read_exact(sock, 5)
    kind = head[:1]
    (length,) = struct.unpack("!i", head[1:])
    return kind, _read_exact(sock, length - 4)


def _error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1]] = part[1:].decode("utf-8", "replace")
    return f"{fields.get(b'C', '?')}: {fields.get(b'M', '?')}"


class Conn:
    """One session. `state` is what the benchmark left it in."""

    def __init__(self, host, port, user, database, application_name, timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        params = b""
        for k, v in (("user", user), ("database", database),
                     ("application_name", application_name)):
            params += k.encode() + b"\0" + v.encode() + b"\0"
        params += b"\0"
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        self.state = "new"
        self._until_ready()
        self.state = "idle"

    def _until_ready(self):
        while True:
            kind, body = _read_message(self.sock)
            if kind == b"E":
                err = _error_text(body)
                # drain to ReadyForQuery when the session survives the error
                raise PgError(err)
            if kind == b"R":
                (code,) = struct.unpack("!i", body[:4])
                if code != 0:
                    raise PgError(f"authentication method {code} not supported (use trust)")
            if kind == b"Z":
                return

    def query(self, sql):
        """Runs `sql` and waits for ReadyForQuery."""
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", 4 + len(data)) + data)
        self._until_ready()

    def scalar(self, sql):
        """Runs `sql` and returns the first column of its first row, as text (or None)."""
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", 4 + len(data)) + data)
        value, error = None, None
        while True:
            kind, body = _read_message(self.sock)
            if kind == b"D" and value is None:
                (length,) = struct.unpack("!i", body[2:6])
                value = body[6:6 + length].decode() if length >= 0 else None
            elif kind == b"E":
                error = _error_text(body)
            elif kind == b"Z":
                if error:
                    raise PgError(error)
                return value

    def send_only(self, sql):
        """Sends `sql` and does not wait: the backend stays `active` while it runs."""
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", 4 + len(data)) + data)

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def open_mixed(host, port, user, database, index, apps=20):
    """Connection number `index` of the mixed set: app `app-NN` (NN = index mod apps);
    states by index mod 4: idle, idle, idle in transaction, active (pg_sleep)."""
    app = f"app-{index % apps:02d}"
    c = Conn(host, port, user, database, app)
    kind = index % 4
    if kind in (0, 1):
        c.query("SELECT 1")
        c.state = "idle"
    elif kind == 2:
        c.query("BEGIN")
        c.query("SELECT 1")
        c.state = "idle in transaction"
    else:
        c.send_only("SELECT pg_sleep(86400)")
        c.state = "active"
    return c
