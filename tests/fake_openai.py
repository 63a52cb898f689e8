"""A loopback OpenAI-compatible chat server for tests: real HTTP, scripted answers, faults.

Binds 127.0.0.1 on a free port, answers ``POST /v1/chat/completions`` with whatever the
``respond(messages) -> str`` callback returns (called once per choice when a request asks
for ``n`` of them, up to ``max_choices``), records every request, and stops when the
context manager exits, or refuses work after ``max_requests`` so that a runaway client
cannot loop forever. With a ``FaultPlan`` it injects the faults a real provider shows, at
a given rate, from a seeded generator.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Respond = Callable[[list[dict[str, Any]]], str]

FAULT_KINDS = ("429", "500", "503", "hang", "drop", "truncated_body", "empty", "not_json")


@dataclass
class FaultPlan:
    """Which faults to inject and how often; ``injected`` counts them by kind."""

    rate: float
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    hang_seconds: float = 4.0
    """A hang outlasts the client's attempt timeout, then the connection closes."""
    never_recovers: Callable[[list[dict[str, Any]]], bool] = lambda messages: False
    """Requests for which every attempt fails (HTTP 500), to test unrecovered samples."""
    injected: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.kinds)
            self.injected[kind] += 1
            return kind


def completion_body(model: str, texts: list[str], number: int) -> bytes:
    """A chat completion with one choice per text; the prompt is billed once."""
    completion_tokens = sum(max(1, len(t.split())) for t in texts)
    return json.dumps({
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": t}}
                    for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": 1000, "completion_tokens": completion_tokens,
                  "total_tokens": 1000 + completion_tokens},
    }).encode()


@contextmanager
def fake_openai_server(
    respond: Respond, faults: FaultPlan | None = None, max_requests: int = 2000, max_choices: int | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Yield ``(base_url, requests)``; ``requests`` fills with each JSON request body.

    ``max_choices`` caps the choices of one answer, as a server that ignores ``n`` (1) or
    limits it does."""
    requests: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                requests.append(body | {"authorization": self.headers.get("Authorization")})
                number = len(requests)
            if number > max_requests or not self.path.endswith("/chat/completions"):
                self.reply(404, b'{"error": {"message": "request budget spent"}}')
                return
            if faults is not None and faults.never_recovers(body["messages"]):
                self.reply(500, b'{"error": {"message": "this request always fails"}}')
                return
            kind = faults.draw() if faults is not None else None
            choices = min(body.get("n") or 1, max_choices or body.get("n") or 1)
            good = completion_body(body["model"], [respond(body["messages"]) for _ in range(choices)], number)
            if kind is None:
                self.reply(200, good)
            elif kind in ("429", "500", "503"):
                self.reply(int(kind), b'{"error": {"message": "injected fault"}}', {"Retry-After": "1"})
            elif kind == "hang":
                time.sleep(faults.hang_seconds)
                self.close_connection = True
            elif kind == "drop":
                self.close_connection = True  # no response at all
            elif kind == "truncated_body":
                self.reply(200, good[: len(good) // 2], length=len(good))
                self.close_connection = True
            elif kind == "empty":
                self.reply(200, completion_body(body["model"], [""], number))
            elif kind == "not_json":
                self.reply(200, b"<html><body>502 Bad Gateway</body></html>")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()
