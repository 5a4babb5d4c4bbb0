#!/usr/bin/env python3
"""Soak one AMQP broker: publishers at full speed (persistent, confirms pipelined), consumers ten times slower.

Runs for --seconds (default 600) against amqp://guest:guest@127.0.0.1:PORT, then prints one JSON summary
line on stdout; progress and a sample every --every seconds go to stderr, and the samples to --csv if given.
A bounded broker shows RSS that levels off, publishers that are blocked (connection.blocked) or slowed by
confirms rather than a queue that grows without bound, and acked == delivered + still queued at the end.

Measured:
  rss_mb        the broker's resident memory (VmRSS of --pid), sampled every --every seconds
  acked         publishes confirmed with basic.ack (nacked counted apart)
  delivered     messages delivered to (and acked by) the consumers
  blocked_s     total time publishers' connections spent blocked by the broker (connection.blocked)
  queued        queue depth at the end (passive queue.declare)
Used by scripts/soak-amqp.sh, which starts the brokers; see there.
"""

import argparse
import asyncio
import collections
import json
import multiprocessing as mp
import os
import struct
import sys
import time

import pika

import amqp_raw

QUEUE = "soak"


def params(port):
    return pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"), heartbeat=0
    )


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return -1.0


def publisher(port, stop_at, body, counters, window):
    """Publish persistent messages with confirms at full speed: `window` unconfirmed at most."""
    asyncio.run(publish_at_full_speed(port, stop_at, body, counters, window))


async def publish_at_full_speed(port, stop_at, body, counters, window):
    reader, writer = await amqp_raw.connect(port)
    await amqp_raw.open_confirm_channel(reader, writer)
    message = amqp_raw.persistent_publish(QUEUE.encode(), body)
    outstanding = collections.deque()  # delivery tags in publish order
    settled = set()  # settled out of order, not yet at the front
    room = asyncio.Event()
    room.set()
    blocked_since = None

    def settle(tag, multiple, name):
        count = 0
        if multiple:
            while outstanding and outstanding[0] <= tag:
                settled.discard(outstanding.popleft())
                count += 1
        else:
            settled.add(tag)
            while outstanding and outstanding[0] in settled:
                settled.discard(outstanding.popleft())
                count += 1
        with counters[name].get_lock():
            counters[name].value += count
        if len(outstanding) < window:
            room.set()

    async def read_confirms():
        nonlocal blocked_since
        while True:
            kind, _channel, payload = await amqp_raw.read_frame(reader)
            if kind != 1:
                continue
            class_method = struct.unpack(">HH", payload[:4])
            if class_method in ((60, 80), (60, 120)):  # basic.ack, basic.nack
                tag, bits = struct.unpack(">QB", payload[4:13])
                settle(tag, bits & 1, "acked" if class_method == (60, 80) else "nacked")
            elif class_method == (10, 60):  # connection.blocked
                blocked_since = time.monotonic()
            elif class_method == (10, 61) and blocked_since is not None:  # connection.unblocked
                with counters["blocked_ms"].get_lock():
                    counters["blocked_ms"].value += int((time.monotonic() - blocked_since) * 1000)
                blocked_since = None
            elif class_method[0] in (10, 20):
                raise RuntimeError(f"closed by the broker: {payload[4:120]!r}")

    confirms = asyncio.create_task(read_confirms())
    tag = 0
    while time.monotonic() < stop_at and not confirms.done():
        try:  # a blocked broker stops confirming: give up waiting for room at the end of the run
            await asyncio.wait_for(room.wait(), timeout=max(0.0, stop_at - time.monotonic()))
        except asyncio.TimeoutError:
            break
        batch = min(64, window - len(outstanding))
        for _ in range(batch):
            tag += 1
            outstanding.append(tag)
        writer.write(message * batch)
        if len(outstanding) >= window:
            room.clear()
        await writer.drain()
    deadline = time.monotonic() + 30
    while outstanding and time.monotonic() < deadline and not confirms.done():
        await asyncio.sleep(0.05)
    if blocked_since is not None:
        with counters["blocked_ms"].get_lock():
            counters["blocked_ms"].value += int((time.monotonic() - blocked_since) * 1000)
    confirms.cancel()
    writer.close()


def consumer(port, stop_at, counters, slowdown):
    """Consume and ack at a tenth of the publishers' current rate."""
    conn = pika.BlockingConnection(params(port))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=100)
    started = time.monotonic()
    for method, _props, _body in ch.consume(QUEUE, inactivity_timeout=1):
        now = time.monotonic()
        if now >= stop_at:
            break
        if method is None:
            continue
        ch.basic_ack(method.delivery_tag)
        with counters["delivered"].get_lock():
            counters["delivered"].value += 1
            delivered = counters["delivered"].value
        allowed = counters["acked"].value / slowdown
        if delivered > allowed:
            time.sleep(min(1.0, (delivered - allowed) / max(1.0, allowed / max(now - started, 1e-3))))
    ch.cancel()
    conn.close()


def queued(port):
    conn = pika.BlockingConnection(params(port))
    depth = conn.channel().queue_declare(QUEUE, durable=True, passive=True).method.message_count
    conn.close()
    return depth


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--pid", type=int, required=True, help="broker process id, for its RSS")
    ap.add_argument("--label", default="broker")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=1)
    ap.add_argument("--size", type=int, default=1024, help="body bytes")
    ap.add_argument("--slowdown", type=float, default=10.0, help="consumers this many times slower")
    ap.add_argument("--window", type=int, default=1000, help="unconfirmed publishes per publisher")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--csv", help="append the samples to this file")
    args = ap.parse_args()

    setup = pika.BlockingConnection(params(args.port))
    setup.channel().queue_declare(QUEUE, durable=True)
    setup.channel().queue_purge(QUEUE)
    setup.close()

    counters = {name: mp.Value("q", 0) for name in ("acked", "nacked", "delivered", "blocked_ms")}
    started = time.monotonic()
    stop_at = started + args.seconds
    body = os.urandom(args.size)
    workers = [
        mp.Process(target=publisher, args=(args.port, stop_at, body, counters, args.window))
        for _ in range(args.publishers)
    ] + [
        mp.Process(target=consumer, args=(args.port, stop_at, counters, args.slowdown))
        for _ in range(args.consumers)
    ]
    for w in workers:
        w.start()

    samples = []
    csv = open(args.csv, "a") if args.csv else None
    while time.monotonic() < stop_at:
        time.sleep(min(args.every, max(0.0, stop_at - time.monotonic())))
        sample = {
            "label": args.label,
            "t_s": round(time.monotonic() - started, 1),
            "rss_mb": round(rss_mb(args.pid), 1),
            "acked": counters["acked"].value,
            "delivered": counters["delivered"].value,
            "blocked_s": round(counters["blocked_ms"].value / 1000, 1),
        }
        samples.append(sample)
        print(json.dumps(sample), file=sys.stderr, flush=True)
        if csv:
            csv.write(",".join(str(v) for v in sample.values()) + "\n")
            csv.flush()
    deadline = time.monotonic() + 60
    for w in workers:
        w.join(timeout=max(0.0, deadline - time.monotonic()))
        if w.is_alive():
            w.terminate()

    rss = [s["rss_mb"] for s in samples if s["rss_mb"] >= 0]
    elapsed = time.monotonic() - started
    print(json.dumps({
        "label": args.label,
        "seconds": round(elapsed, 1),
        "acked": counters["acked"].value,
        "nacked": counters["nacked"].value,
        "delivered": counters["delivered"].value,
        "queued": queued(args.port),
        "publish_rate": round(counters["acked"].value / elapsed),
        "deliver_rate": round(counters["delivered"].value / elapsed),
        "blocked_s": round(counters["blocked_ms"].value / 1000, 1),
        "rss_mb_first": rss[0] if rss else None,
        "rss_mb_max": max(rss) if rss else None,
        "rss_mb_last": rss[-1] if rss else None,
    }), flush=True)


if __name__ == "__main__":
    main()
