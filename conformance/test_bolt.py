"""A small Bolt for Python app against the sandbox, over Socket Mode and over HTTP.

It answers a mention with say() in the thread, opens (and updates) a modal from a slash command,
handles the modal's submission, and handles a button click by updating the message. Everything is
driven through the sandbox's control API, as the people in the workspace would, and checked by
what landed in the sandbox.
"""

import threading

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from conftest import free_port, manifest

MODAL = {
    "type": "modal",
    "callback_id": "conform_view",
    "title": {"type": "plain_text", "text": "Conformance"},
    "submit": {"type": "plain_text", "text": "Save"},
    "blocks": [
        {
            "type": "input",
            "block_id": "name_block",
            "label": {"type": "plain_text", "text": "Name"},
            "element": {"type": "plain_text_input", "action_id": "name"},
        }
    ],
}


def bolt_app(sandbox):
    app = App(client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url), signing_secret=sandbox.signing_secret)
    general = sandbox.channel_ids["general"]

    @app.event("app_mention")
    def on_mention(event, say):
        say(text="pong", thread_ts=event["ts"])

    @app.event("message")
    def on_message():
        pass

    @app.command("/conform")
    def on_command(ack, body, client):
        ack()
        opened = client.views_open(trigger_id=body["trigger_id"], view=MODAL)
        view = opened["view"]
        client.views_update(view_id=view["id"], hash=view["hash"], view={**MODAL, "title": {"type": "plain_text", "text": "Conformance 2"}})

    @app.view("conform_view")
    def on_submit(ack, view, client):
        ack()
        name = view["state"]["values"]["name_block"]["name"]["value"]
        client.chat_postMessage(channel=general, text=f"submitted {name}")

    @app.action("approve")
    def on_click(ack, body, client):
        ack()
        client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], text="approved", blocks=[])

    return app


def exercise(sandbox):
    """The same scenario for either transport."""
    # A mention, answered with say() in the thread.
    ts = sandbox.post("/messages", {"user": "alice", "channel": "general", "text": f"<@{sandbox.bot_user_id}> ping"})["ts"]
    thread = sandbox.thread("general", ts, wait_for=2, timeout_ms=10000)
    assert [m["text"] for m in thread[1:]] == ["pong"]

    # A slash command opens a modal (views.open with the trigger, then views.update).
    result = sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": ""})
    assert result["ack"]["acked"] is True, result
    views = sandbox.wait_until("the modal", lambda: sandbox.get("/views?user=alice")["views"])
    assert views[-1]["title"]["text"] == "Conformance 2"

    # Its submission reaches the app's view handler.
    submitted = sandbox.post("/views/submit", {"user": "alice", "values": {"name_block": {"name": "Ada"}}})
    assert submitted["view_closed"] is True, submitted
    sandbox.wait_until("the submission's message", lambda: any(m["text"] == "submitted Ada" for m in sandbox.messages("general")))

    # A button in a message: the click is acked and the app updates the message.
    client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
    button = {"type": "actions", "elements": [{"type": "button", "action_id": "approve", "value": "1", "text": {"type": "plain_text", "text": "Approve"}}]}
    msg_ts = client.chat_postMessage(channel=sandbox.channel_ids["general"], text="approve?", blocks=[button])["ts"]
    clicked = sandbox.post("/actions", {"user": "bob", "channel": "general", "ts": msg_ts, "action_id": "approve"})
    assert clicked["ack"]["acked"] is True, clicked
    sandbox.wait_until(
        "the updated message",
        lambda: any(m["ts"] == msg_ts and m["text"] == "approved" for m in sandbox.messages("general")),
    )
    calls = sandbox.get("/api_calls?method=views.open")["calls"]
    assert calls and all(c["ok"] for c in calls)


def test_bolt_over_socket_mode(sandbox):
    sandbox.set_manifest(manifest(True))
    handler = SocketModeHandler(bolt_app(sandbox), sandbox.app_token)
    handler.connect()
    try:
        sandbox.wait_until("a Socket Mode connection", lambda: sandbox.get("/socket")["connections"])
        exercise(sandbox)
    finally:
        handler.close()


def test_bolt_over_http(sandbox):
    port = free_port()
    app = bolt_app(sandbox)
    threading.Thread(target=app.start, kwargs={"port": port}, daemon=True).start()
    url = f"http://127.0.0.1:{port}/slack/events"
    sandbox.set_manifest(manifest(False, request_url=url))
    try:
        exercise(sandbox)
        deliveries = sandbox.get("/deliveries")["deliveries"]
        assert any(d["attempts"] and d["attempts"][0]["transport"] == "http" and d["acked"] for d in deliveries)
    finally:
        sandbox.set_manifest(manifest(True))
