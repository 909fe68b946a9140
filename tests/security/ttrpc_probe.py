#!/usr/bin/env python3
"""tests/security/ttrpc_probe.py SOCKET TASK_ID [BUNDLES]: hostile ttrpc frames against
a running containerd-shim-cask-v2.

Plays a client that does not follow the protocol: each case writes raw bytes
to the shim's ttrpc socket and checks the answer (a ttrpc.Response with the
expected gRPC code and message) or, for frames that have no stream to answer
on, that the shim still serves a well-formed State call afterwards. The
framing is ttrpc's: a 10-byte header (big-endian uint32 length, big-endian
uint32 stream id, uint8 type, uint8 flags) and a protobuf payload; a request
is ttrpc.Request {1 service, 2 method, 3 payload, 4 timeout_nano}; a response
is ttrpc.Response {1 Status {1 code, 2 message}, 2 payload}.

Prints one line per case ("ok KIND: message" or "FAIL KIND: why") and the
number of kinds; exits 1 when any case failed. Standard library only.
"""

import os
import socket
import struct
import sys

SERVICE = "containerd.task.v2.Task"
MAX_MESSAGE = 4 << 20
# gRPC codes.
INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, UNIMPLEMENTED = 3, 5, 8, 12


def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint((num << 3) | 2) + varint(len(data)) + data


def field_varint(num, n):
    return varint(num << 3) + varint(n)


def request(method, payload=b"", service=SERVICE, timeout_nano=None):
    msg = field_bytes(1, service) + field_bytes(2, method) + field_bytes(3, payload)
    if timeout_nano is not None:
        msg += field_varint(4, timeout_nano)
    return msg


def header(length, sid, mtype=1, flags=0):
    return struct.pack(">IIBB", length, sid, mtype, flags)


def frame(payload, sid, mtype=1):
    return header(len(payload), sid, mtype) + payload


def read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def parse_fields(buf):
    """The top-level fields of a protobuf message: {num: [value, ...]}."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(v)
    return out


class Conn:
    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the shim")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self):
        """(stream id, code, message, payload) of the next frame."""
        length, sid, mtype, _ = struct.unpack(">IIBB", self.read_exact(10))
        if length > MAX_MESSAGE:
            raise ValueError("response of %d bytes" % length)
        body = self.read_exact(length)
        if mtype != 2:
            raise ValueError("frame type %d, want a response (2)" % mtype)
        f = parse_fields(body)
        code, message = 0, ""
        if 1 in f:
            st = parse_fields(f[1][0])
            code = st.get(1, [0])[0]
            message = st.get(2, [b""])[0].decode(errors="replace")
        return sid, code, message, f.get(2, [b""])[0]

    def close(self):
        self.s.close()


def state_request(task_id):
    return request("State", field_bytes(1, task_id))


class Probe:
    def __init__(self, path, task_id, bundles=None):
        self.path, self.task_id, self.bundles = path, task_id, bundles
        self.failed, self.kinds = 0, 0

    def report(self, kind, ok, what):
        self.kinds += 1
        if ok:
            print("ok %s: %s" % (kind, what))
        else:
            self.failed += 1
            print("FAIL %s: %s" % (kind, what))

    def still_serves(self, conn=None):
        """A well-formed State call still answers, on CONN or a new connection."""
        own = conn is None
        c = conn or Conn(self.path)
        try:
            c.send(frame(state_request(self.task_id), 1001))
            sid, code, message, payload = c.response()
            return sid == 1001 and code == 0 and self.task_id.encode() in payload, (code, message)
        finally:
            if own:
                c.close()

    def expect_status(self, kind, data, sid, want_code, needle, same_conn=True):
        """DATA gets an error status on stream SID; then a State call is
        still served (on the same connection unless SAME_CONN is false: after
        an oversized header the rest of the stream is that frame's payload)."""
        c = Conn(self.path)
        try:
            c.send(data)
            got_sid, code, message, _ = c.response()
            ok = got_sid == sid and code == want_code and needle in message
            alive, st = self.still_serves(c if same_conn else None)
            self.report(kind, ok and alive,
                        "code %d %r on stream %d (want %d containing %r); shim still serves: %s %s"
                        % (code, message, got_sid, want_code, needle, alive, st))
        except (OSError, EOFError, ValueError) as e:
            self.report(kind, False, "%s: %s" % (type(e).__name__, e))
        finally:
            c.close()

    def expect_create_error(self, kind, task_id, bundle, sid, needle):
        c = Conn(self.path, timeout=300)
        try:
            c.send(frame(request("Create", field_bytes(1, task_id) + field_bytes(2, bundle)), sid))
            got_sid, code, message, _ = c.response()
            ok = got_sid == sid and code != 0 and needle in message
            alive, st = self.still_serves(c)
            self.report(kind, ok and alive, "code %d %r (want an error containing %r); shim still serves: %s %s"
                        % (code, message, needle, alive, st))
        except (OSError, EOFError, ValueError) as e:
            self.report(kind, False, "%s: %s" % (type(e).__name__, e))
        finally:
            c.close()

    def expect_survives(self, kind, data):
        """Bytes with no stream to answer: the shim drops or closes the
        connection, and serves new ones."""
        try:
            c = Conn(self.path)
            c.send(data)
            c.close()
            alive, st = self.still_serves()
            self.report(kind, alive, "shim still serves a new connection: %s %s" % (alive, st))
        except (OSError, EOFError, ValueError) as e:
            self.report(kind, False, "%s: %s" % (type(e).__name__, e))

    def run(self):
        garbage = b"\xff\xff\xff\xff\x0f"  # wire type 7: not protobuf
        self.expect_survives("truncated header", header(100, 1)[:5])
        self.expect_survives("truncated payload", header(100, 1) + b"\x0a\x05")
        self.expect_status("oversized length (4 GiB - 1)", header(0xFFFFFFFF, 3) + b"x" * 4096, 3,
                           RESOURCE_EXHAUSTED, "exceed maximum message size", same_conn=False)
        self.expect_status("oversized length, payload sent (4 MiB + 1)",
                           frame(b"\0" * (MAX_MESSAGE + 1), 5), 5, RESOURCE_EXHAUSTED,
                           "exceed maximum message size")
        self.expect_status("even (server-side) stream id", frame(state_request(self.task_id), 2), 2,
                           INVALID_ARGUMENT, "StreamID must be odd")
        self.expect_status("garbage instead of a ttrpc.Request", frame(garbage, 7), 7, INVALID_ARGUMENT,
                           "not a ttrpc.Request")
        self.expect_status("unknown service", frame(request("State", service="evil.Service"), 9), 9,
                           UNIMPLEMENTED, "evil.Service")
        self.expect_status("unknown method", frame(request("Escape"), 11), 11, UNIMPLEMENTED, "Escape")
        self.expect_status("garbage request payload", frame(request("State", garbage), 13), 13,
                           INVALID_ARGUMENT, "cannot parse")
        self.expect_status("unknown task id", frame(state_request("no-such-task"), 15), 15, NOT_FOUND,
                           "no-such-task")
        self.expect_status("task id with path traversal",
                           frame(request("Create", field_bytes(1, "../../../etc") + field_bytes(2, "/etc")), 17),
                           17, INVALID_ARGUMENT, "../../../etc")
        self.expect_status("relative bundle path",
                           frame(request("Create", field_bytes(1, "rel1") + field_bytes(2, "relative/bundle")), 19),
                           19, INVALID_ARGUMENT, "relative/bundle")
        # A data frame on a stream nobody opened, and an unknown frame
        # type: ignored; the connection keeps serving.
        try:
            c = Conn(self.path)
            c.send(frame(b"stray data", 21, mtype=3) + frame(b"from the future", 23, mtype=9))
            alive, st = self.still_serves(c)
            c.close()
            self.report("data frame on an unopened stream / unknown frame type", alive,
                        "same connection still serves: %s %s" % (alive, st))
        except (OSError, EOFError, ValueError) as e:
            self.report("data frame on an unopened stream / unknown frame type", False, str(e))
        # Stream ids reused while the first call may still be in flight, and
        # the id that wraps (2^32 - 1): both answered, on their own ids.
        try:
            c = Conn(self.path)
            c.send(frame(state_request(self.task_id), 0xFFFFFFFF) + frame(state_request("nope"), 0xFFFFFFFF))
            answers = sorted((c.response()[:2] for _ in range(2)))
            c.close()
            ok = answers == [(0xFFFFFFFF, 0), (0xFFFFFFFF, NOT_FOUND)]
            self.report("duplicate and maximal stream id", ok, "answers %s" % answers)
        except (OSError, EOFError, ValueError) as e:
            self.report("duplicate and maximal stream id", False, str(e))
        # Many connections opened and dropped without a word: no fd is kept.
        try:
            conns = [Conn(self.path) for _ in range(200)]
            for c in conns:
                c.close()
            alive, st = self.still_serves()
            self.report("200 idle connections dropped", alive, "shim still serves: %s %s" % (alive, st))
        except (OSError, EOFError, ValueError) as e:
            self.report("200 idle connections dropped", False, str(e))
        # Hostile bundles handed to Create directly (ctr would re-encode
        # config.json and drop what it does not know): each directory of
        # BUNDLES holds a config.json (or not) and the text the error must
        # contain in the file "needle".
        if self.bundles:
            sid = 101
            for name in sorted(os.listdir(self.bundles)):
                d = os.path.join(self.bundles, name)
                with open(os.path.join(d, "needle")) as f:
                    needle = f.read().strip()
                with open(os.path.join(d, "kind")) as f:
                    kind = f.read().strip()
                self.expect_create_error(kind, name, d, sid, needle)
                sid += 2
        print("%d kinds, %d failed" % (self.kinds, self.failed))
        return 1 if self.failed else 0


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.stderr.write("usage: ttrpc_probe.py SOCKET TASK_ID [BUNDLES]\n")
        sys.exit(2)
    sys.exit(Probe(*sys.argv[1:]).run())
