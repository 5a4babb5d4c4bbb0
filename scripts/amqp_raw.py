"""Just enough raw AMQP 0-9-1 for the soak and connection-scale scripts: the client handshake (PLAIN guest,
heartbeat 0), channel.open, and the frames of a pipelined publisher with confirms, on asyncio streams. Real
clients serialise each confirm round trip (pika's BlockingConnection does): this keeps a window of them in
flight, so a publisher really runs at full speed."""

import asyncio
import struct

HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = b"\xce"


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + FRAME_END


def method(channel, class_id, method_id, args=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def shortstr(b):
    return bytes([len(b)]) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def table(items):
    body = b"".join(shortstr(k) + v for k, v in items)
    return struct.pack(">I", len(body)) + body


# client-properties: ask for connection.blocked so the broker reports when it blocks publishers
CLIENT_PROPERTIES = table([(b"capabilities", b"F" + table([(b"connection.blocked", b"t\x01")]))])
START_OK = method(0, 10, 11, CLIENT_PROPERTIES + shortstr(b"PLAIN") + longstr(b"\0guest\0guest")
                  + shortstr(b"en_US"))
OPEN = method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00")


async def read_frame(reader):
    """(kind, channel, payload) of the next frame."""
    kind, channel, size = struct.unpack(">BHI", await reader.readexactly(7))
    payload = await reader.readexactly(size + 1)
    return kind, channel, payload[:-1]


async def expect(reader, want):
    """Skip heartbeats; return the args of the next method, which must be `want` (class, method)."""
    while True:
        kind, _channel, payload = await read_frame(reader)
        if kind != 1:
            continue
        got = struct.unpack(">HH", payload[:4])
        if got != want:
            raise RuntimeError(f"expected method {want}, got {got}: {payload[4:80]!r}")
        return payload[4:]


async def connect(port, source="127.0.0.1"):
    """Open a connection as guest to vhost / (heartbeats off); returns (reader, writer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(HEADER)
    await expect(reader, (10, 10))
    writer.write(START_OK)
    tune = await expect(reader, (10, 30))
    channel_max, frame_max, _heartbeat = struct.unpack(">HIH", tune[:8])
    writer.write(method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
    writer.write(OPEN)
    await expect(reader, (10, 41))
    return reader, writer


async def open_confirm_channel(reader, writer):
    """channel.open on channel 1, then confirm.select."""
    writer.write(method(1, 20, 10, shortstr(b"")))
    await expect(reader, (20, 11))
    writer.write(method(1, 85, 10, b"\x00"))
    await expect(reader, (85, 11))


def persistent_publish(queue, body):
    """basic.publish to the default exchange, a header with delivery-mode 2, and the body (one frame)."""
    publish = method(1, 60, 40, struct.pack(">H", 0) + shortstr(b"") + shortstr(queue) + b"\x00")
    header = frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0x1000) + b"\x02")
    return publish + header + frame(3, 1, body)
