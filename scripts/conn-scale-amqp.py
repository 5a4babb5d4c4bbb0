#!/usr/bin/env python3
"""Open as many idle AMQP 0-9-1 connections to one broker as the open-file limit allows, from 127.0.0.x
source addresses, while another process publishes with confirms on its own connection and times each
publish. Prints one JSON line: connections opened (and failed), broker RSS before and after with the RSS per
connection, the time the storm took, and the publish latency (p50/p99/max) measured during it.

Used by scripts/conn-scale-amqp.sh; runs against amqp://guest:guest@127.0.0.1:PORT.
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import sys
import time

import pika

import amqp_raw

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1.0


async def open_connection(port, source, held):
    """Handshake (PLAIN guest, heartbeat 0) and keep the socket open."""
    _reader, writer = await amqp_raw.connect(port, source)
    held.append(writer)


async def storm(port, count, parallel):
    held, failures = [], []
    sem = asyncio.Semaphore(parallel)

    async def one(i):
        source = f"127.0.0.{1 + i % 250}"
        async with sem:
            try:
                await asyncio.wait_for(open_connection(port, source, held), 30)
            except Exception as e:  # counted, not fatal: the point is how many get in
                failures.append(repr(e))

    await asyncio.gather(*(one(i) for i in range(count)))
    return held, failures


def latency_probe(port, stop, out, rate):
    """Publish (confirmed, 16 B) at `rate` per second until `stop` is set; record each round trip."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"), heartbeat=0))
    ch = conn.channel()
    ch.queue_declare("scale-probe", auto_delete=True)
    ch.confirm_delivery()
    samples = []
    interval = 1.0 / rate
    while not stop.is_set():
        t0 = time.perf_counter()
        ch.basic_publish("", "scale-probe", b"0123456789abcdef")
        samples.append(time.perf_counter() - t0)
        time.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    conn.close()
    out.put(samples)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--pid", type=int, required=True, help="broker process id, for its RSS")
    ap.add_argument("--count", type=int, default=0, help="connections (default: hard open-file limit - 200)")
    ap.add_argument("--parallel", type=int, default=200, help="handshakes in flight at once")
    ap.add_argument("--rate", type=float, default=200, help="probe publishes per second")
    args = ap.parse_args()

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = args.count or hard - 200

    stop, out = mp.Event(), mp.Queue()
    probe = mp.Process(target=latency_probe, args=(args.port, stop, out, args.rate))
    probe.start()
    time.sleep(2)
    rss_before = rss_mb(args.pid)
    started = time.monotonic()
    loop = asyncio.new_event_loop()
    held, failures = loop.run_until_complete(storm(args.port, count, args.parallel))
    storm_s = time.monotonic() - started
    time.sleep(2)
    rss_after = rss_mb(args.pid)
    stop.set()
    samples = sorted(out.get(timeout=60))
    probe.join(timeout=30)
    for writer in held:
        writer.close()
    ms = lambda s: None if s is None else round(s * 1000, 3)  # noqa: E731
    print(json.dumps({
        "requested": count,
        "opened": len(held),
        "failed": len(failures),
        "first_failures": sorted(set(failures))[:3],
        "storm_s": round(storm_s, 1),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1),
        "rss_kb_per_connection": round((rss_after - rss_before) * 1024 / max(1, len(held)), 1),
        "probe_publishes": len(samples),
        "publish_p50_ms": ms(percentile(samples, 0.50)),
        "publish_p99_ms": ms(percentile(samples, 0.99)),
        "publish_max_ms": ms(samples[-1] if samples else None),
    }), flush=True)
    loop.close()


if __name__ == "__main__":
    sys.exit(main())
