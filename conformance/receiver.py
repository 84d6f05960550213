"""A stdlib HTTP server on 127.0.0.1:0 that records every request (raw body and headers) and
answers as a Slack app would: the url_verification challenge, 200 otherwise, unless a test says."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Received:
    def __init__(self, path, headers, body):
        self.path = path
        self.headers = headers  # names lowercased: HTTP header names are case-insensitive
        self.body = body  # the raw body, as text
        self.at = time.monotonic()

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.path} retry={self.headers.get('x-slack-retry-num')} {self.body[:120]!r}>"


class Receiver:
    def __init__(self):
        self.received = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        # respond(received) -> (status, body, extra headers) or None for the default answer.
        self.respond = lambda r: None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                r = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.changed:
                    receiver.received.append(r)
                    receiver.changed.notify_all()
                answer = receiver.respond(r) or receiver.default_answer(r)
                status, text, headers = answer
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if text.startswith("{") else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @staticmethod
    def default_answer(r):
        if r.headers.get("content-type", "").startswith("application/json"):
            payload = json.loads(r.body)
            if payload.get("type") == "url_verification":
                return 200, json.dumps({"challenge": payload["challenge"]}), {}
        return 200, "", {}

    def wait_for(self, what, predicate, count=1, timeout=8.0):
        """Waits until `count` recorded requests satisfy `predicate`; returns them."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                matching = [r for r in self.received if predicate(r)]
                if len(matching) >= count:
                    return matching
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; received {self.received}")
                self.changed.wait(left)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
