"""A bounded loopback OpenAI-compatible chat server with a fixed simulated latency.

    python benchmarks/loopback_server.py --latency 2.0 --max-requests 1000 --max-lifetime 600

Binds 127.0.0.1 only, on a free port, and prints one JSON line ``{"port": N}`` when ready.
``POST .../chat/completions`` waits ``--latency`` seconds (asyncio, so any number of
requests wait at once) and answers with a realistic long scratchpad turn
(``simulated.turn_for_messages``) and a usage estimate. ``GET /stats`` returns what it saw:
requests per path, the peak number of requests in flight, connections opened. It stops by
itself after ``--max-requests`` chat requests (later ones get 429), after
``--max-lifetime`` seconds, when its parent process dies, or on ``POST /shutdown``.
Stdlib only: a minimal HTTP/1.1 server with keep-alive (no chunked request bodies).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulated import estimate_tokens, turn_for_messages  # noqa: E402


class Stats:
    def __init__(self) -> None:
        self.paths: Counter[str] = Counter()
        self.chat = 0
        self.rejected = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.connections = 0
        self.peak_connections = 0
        self.open_connections = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.first_request: float | None = None
        self.last_response: float | None = None

    def as_dict(self) -> dict:
        return {
            "paths": dict(self.paths), "chat_requests": self.chat, "rejected_429": self.rejected,
            "peak_in_flight": self.peak_in_flight, "connections_opened": self.connections,
            "peak_open_connections": self.peak_connections, "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "active_seconds": (self.last_response - self.first_request)
            if self.first_request and self.last_response else None,
            # CLOCK_MONOTONIC is system-wide on Linux: comparable with the client's clock
            "first_request_at": self.first_request, "last_response_at": self.last_response,
        }


def _response(status: int, body: bytes, reason: str = "OK") -> bytes:
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def serve(latency: float, max_requests: int, max_lifetime: float) -> None:
    stats = Stats()
    stop = asyncio.Event()
    started = time.monotonic()

    async def chat(body: bytes) -> bytes:
        stats.chat += 1
        if stats.chat > max_requests:
            stats.rejected += 1
            if stats.chat > 2 * max_requests:
                stop.set()
            return _response(429, b'{"error": {"message": "benchmark server request budget spent"}}',
                             "Too Many Requests")
        request = json.loads(body)
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            await asyncio.sleep(latency)
        finally:
            stats.in_flight -= 1
        messages = request.get("messages", [])
        text = turn_for_messages(messages)
        prompt_tokens = sum(estimate_tokens(str(m.get("content", ""))) for m in messages)
        completion_tokens = estimate_tokens(text)
        payload = json.dumps({
            "id": f"chatcmpl-bench-{stats.chat}", "object": "chat.completion",
            "created": int(time.time()), "model": request.get("model", "bench"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }).encode()
        return _response(200, payload)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats.connections += 1
        stats.open_connections += 1
        stats.peak_connections = max(stats.peak_connections, stats.open_connections)
        try:
            while not stop.is_set():
                line = await reader.readline()
                if not line.strip():
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = header.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                stats.bytes_in += len(line) + length
                route = path.split("?", 1)[0]
                if route.endswith("/chat/completions"):
                    stats.first_request = stats.first_request or time.monotonic()
                stats.paths[f"{method} {route}"] += 1
                if method == "POST" and route.endswith("/chat/completions"):
                    reply = await chat(body)
                elif method == "GET" and route == "/stats":
                    stats.paths[f"{method} {route}"] -= 1
                    reply = _response(200, json.dumps(stats.as_dict()).encode())
                elif method == "POST" and route == "/shutdown":
                    reply = _response(200, b"{}")
                    stop.set()
                else:
                    reply = _response(404, b'{"error": {"message": "not found"}}', "Not Found")
                writer.write(reply)
                await writer.drain()
                stats.bytes_out += len(reply)
                if route.endswith("/chat/completions"):
                    stats.last_response = time.monotonic()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            stats.open_connections -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    parent = os.getppid()
    async with server:
        while not stop.is_set():
            if time.monotonic() - started > max_lifetime or os.getppid() != parent:
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass
    print(json.dumps({"stopped": stats.as_dict()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per chat request")
    parser.add_argument("--max-requests", type=int, default=1000)
    parser.add_argument("--max-lifetime", type=float, default=600.0, help="seconds")
    args = parser.parse_args()
    asyncio.run(serve(args.latency, args.max_requests, args.max_lifetime))


if __name__ == "__main__":
    main()
