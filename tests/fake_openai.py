"""A loopback OpenAI-compatible chat server for tests: real HTTP, scripted answers.

Binds 127.0.0.1 on a free port, answers ``POST /v1/chat/completions`` with whatever the
``respond(messages) -> str`` callback returns, records every request, and stops when the
context manager exits (or after ``max_requests``, so a runaway client cannot loop forever).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Respond = Callable[[list[dict[str, Any]]], str]


@contextmanager
def fake_openai_server(respond: Respond, max_requests: int = 1000) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Yield ``(base_url, requests)``; ``requests`` fills with each JSON request body."""
    requests: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body | {"authorization": self.headers.get("Authorization")})
            if len(requests) > max_requests or not self.path.endswith("/chat/completions"):
                self.send_error(404 if len(requests) <= max_requests else 429)
                return
            text = respond(body["messages"])
            payload = json.dumps({
                "id": f"chatcmpl-{len(requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": len(text.split()),
                          "total_tokens": 1000 + len(text.split())},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()
