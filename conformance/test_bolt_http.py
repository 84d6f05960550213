"""A Bolt for Python app over HTTP against the sandbox (docs/sandbox.md section 4).

The app runs in slack_bolt's own development server; the manifest (socket_mode_enabled: false)
points the event, command and interactivity URLs at it. Bolt checks every request's signature
itself (and answers the url_verification handshake), so each delivery it handles was signed right.
"""

import threading

import pytest
from slack_bolt.app.app import SlackAppDevelopmentServer

from bolt_scenario import Seen, build_app, exercise
from sandboxlib import manifest


@pytest.fixture
def bolt(sandbox):
    seen = Seen()
    server = SlackAppDevelopmentServer(port=0, path="/slack/events", app=build_app(sandbox, seen),
                                       http_server_logger_enabled=False)
    port = server._server.server_address[1]
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/slack/events"
    sandbox.set_manifest(manifest(socket_mode=False, events_url=url, commands_url=url, interactivity_url=url))
    try:
        yield seen
    finally:
        server._server.shutdown()
        thread.join(timeout=5)


def test_bolt_over_http(sandbox, bolt):
    exercise(sandbox, bolt, "http")
    rejected = [d for d in sandbox.deliveries() for a in d["attempts"] if a.get("status") == 401]
    assert not rejected, f"Bolt refused a signature: {rejected}"
