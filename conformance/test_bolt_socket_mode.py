"""A Bolt for Python app in Socket Mode against the sandbox (docs/sandbox.md section 3).

slack_bolt's SocketModeHandler uses slack_sdk's built-in Socket Mode client: it calls
apps.connections.open with the app-level token and follows the ws:// URL the sandbox returns.
"""

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bolt_scenario import Seen, build_app, exercise
from sandboxlib import manifest

SANDBOX_MANIFEST = manifest(socket_mode=True)


@pytest.fixture
def bolt(sandbox):
    seen = Seen()
    handler = SocketModeHandler(build_app(sandbox, seen), sandbox.app_token)
    handler.connect()
    try:
        sandbox.wait_until("a Socket Mode connection", lambda: sandbox.get("/socket")["connections"])
        yield seen
    finally:
        handler.close()


def test_bolt_over_socket_mode(sandbox, bolt):
    calls = sandbox.api_calls("apps.connections.open")
    assert calls and calls[-1]["ok"], calls
    exercise(sandbox, bolt, "socket_mode")
