"""A fake OpenAI-compatible server, and named as such: it exists only to inject the faults a real
server cannot produce on demand (429, 500, a hang, a key echoed in an error). Each request is
answered by the next entry of a script: an HTTP status, "hang", "ok" (a valid chat answer), or
"say:TEXT" (a well-formed response whose content is TEXT, for garbage answers)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultServer:
    def __init__(self, script: list, then: str = "ok", hang_seconds: float = 5.0, error_body: dict | None = None,
                 on_request=None, delay: float = 0.0):
        self.script, self.then, self.hang_seconds, self.error_body = list(script), then, hang_seconds, error_body
        self.on_request = on_request  # called with the request's number (0, 1, ...) before it is answered
        self.delay = delay  # seconds every request takes
        self.in_flight = self.most_in_flight = 0
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    action = server.script.pop(0) if server.script else server.then
                    number = len(server.requests) - 1
                if server.on_request is not None:
                    server.on_request(number)
                with server._lock:
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    self._answer(action, body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, action, body):
                time.sleep(server.delay)
                if action == "hang":
                    time.sleep(server.hang_seconds)
                    action = "ok"
                if action == "ok":
                    self._send(200, server.answer(body))
                elif action.startswith("say:"):
                    self._send(200, server.answer(body, action[len("say:"):]))
                else:
                    self._send(int(action), server.error_body or {"error": {"message": f"injected {action}"}})

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fault-model", "object": "model"}]})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a hang

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @staticmethod
    def answer(body: dict, content: str | None = None) -> dict:
        """A chat completion saying `content`, or by default a valid answer: the first label when a
        label was asked for, else a one-line note."""
        response_format = body.get("response_format")
        if content is None and response_format:
            schema = response_format.get("schema") or response_format.get("json_schema", {}).get("schema", {})
            content = json.dumps({"label": schema["properties"]["label"]["enum"][0]})
        elif content is None:
            content = "- Creatures that are red tend to be Florp."
        return {"id": "chatcmpl-fault", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
