"""slack_sdk's SignatureVerifier accepts what the sandbox signs, first tries and retries alike."""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slack_sdk.signature import SignatureVerifier

from conftest import manifest


class Recorder(BaseHTTPRequestHandler):
    received = []
    fail_first_event = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        # Header names compared lowercased: HTTP says they are case-insensitive.
        Recorder.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if self.headers["Content-Type"].startswith("application/json"):
            payload = json.loads(body)
            if payload["type"] == "url_verification":
                return self.reply(200, json.dumps({"challenge": payload["challenge"]}))
            if Recorder.fail_first_event:
                Recorder.fail_first_event = False
                return self.reply(500, "")
        self.reply(200, "")

    def reply(self, status, text):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args):
        pass


def test_signed_deliveries_verify_with_the_official_verifier(sandbox):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/slack"
    try:
        sandbox.set_manifest(manifest(False, request_url=url))
        sandbox.post("/messages", {"user": "alice", "channel": "general", "text": f"<@{sandbox.bot_user_id}> hi"})
        sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": "x"})

        def events():
            return [(h, b) for h, b in Recorder.received if '"event_callback"' in b]

        sandbox.wait_until("the retried event", lambda: any(h.get("x-slack-retry-num") == "1" for h, _ in events()))
        verifier = SignatureVerifier(sandbox.signing_secret)
        assert len(Recorder.received) >= 4
        for headers, body in Recorder.received:
            assert verifier.is_valid(body, headers["x-slack-request-timestamp"], headers["x-slack-signature"]), body[:80]
            assert not verifier.is_valid(body + " ", headers["x-slack-request-timestamp"], headers["x-slack-signature"])
        first, retry = events()[0], next(e for e in events() if e[0].get("x-slack-retry-num") == "1")
        assert json.loads(first[1])["event_id"] == json.loads(retry[1])["event_id"]
        assert retry[0]["x-slack-retry-reason"] == "http_error"
        command = next(b for h, b in Recorder.received if h["content-type"].startswith("application/x-www-form-urlencoded"))
        fields = dict(urllib.parse.parse_qsl(command))
        assert fields["command"] == "/conform" and fields["response_url"].startswith(sandbox.url)
    finally:
        server.shutdown()
        sandbox.set_manifest(manifest(True))
