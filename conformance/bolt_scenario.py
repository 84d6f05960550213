"""One Bolt for Python app and one scenario, run over Socket Mode (test_bolt_socket_mode.py) and
over HTTP (test_bolt_http.py).

The app answers a mention with say() in the thread; answers `/conform echo …` in its ack, `/conform
later` through respond(), and plain `/conform` by opening a modal (views.open with the command's
trigger_id, then views.update); a button in the modal pushes a second view (views.push); the
submissions are handled (validation errors, then success); buttons in a message are handled with
chat.update and with respond(replace_original=True); app_home_opened publishes a Home tab.
Everything is driven through the sandbox's control API, as the people in the workspace would, and
checked by what landed in the sandbox.
"""

import logging
import threading

from slack_bolt import App
from slack_sdk import WebClient

MODAL = {
    "type": "modal",
    "callback_id": "conform_view",
    "title": {"type": "plain_text", "text": "Conformance"},
    "submit": {"type": "plain_text", "text": "Save"},
    "close": {"type": "plain_text", "text": "Cancel"},
    "private_metadata": "from-command",
    "blocks": [
        {
            "type": "input",
            "block_id": "name_block",
            "label": {"type": "plain_text", "text": "Name"},
            "element": {"type": "plain_text_input", "action_id": "name"},
        },
        {
            "type": "actions",
            "block_id": "more_block",
            "elements": [{"type": "button", "action_id": "push_more", "text": {"type": "plain_text", "text": "More"}}],
        },
    ],
}

PUSHED = {
    "type": "modal",
    "callback_id": "conform_pushed",
    "title": {"type": "plain_text", "text": "More"},
    "submit": {"type": "plain_text", "text": "OK"},
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "pushed"}}],
}


def button_message(*action_ids):
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Decide"}},
        {
            "type": "actions",
            "block_id": "decide",
            "elements": [
                {"type": "button", "action_id": a, "value": a, "text": {"type": "plain_text", "text": a}}
                for a in action_ids
            ],
        },
    ]


class Seen:
    """What the app's listeners saw, for the test to check; errors raised in listeners included."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = {}
        self.errors = []

    def add(self, key, value):
        with self.lock:
            self.items.setdefault(key, []).append(value)

    def get(self, key):
        with self.lock:
            return list(self.items.get(key, []))


def build_app(sandbox, seen):
    app = App(
        client=WebClient(token=sandbox.bot_token, base_url=sandbox.api_url, timeout=10),
        signing_secret=sandbox.signing_secret,
        logger=logging.getLogger("conformance.bolt"),
    )
    general = sandbox.channel_ids["general"]

    @app.error
    def on_error(error, body):
        seen.errors.append(f"{type(error).__name__}: {error} (body: {str(body)[:300]})")

    @app.event("app_mention")
    def on_mention(event, say, context):
        seen.add("mention", {"event": event, "bot_user_id": context.bot_user_id})
        say(text="pong", thread_ts=event["ts"])

    @app.event("message")
    def on_message(event):
        seen.add("message", event)

    @app.event("app_home_opened")
    def on_home(event, client):
        seen.add("home", event)
        client.views_publish(
            user_id=event["user"],
            view={"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Welcome home"}}]},
        )

    @app.command("/conform")
    def on_command(ack, command, respond, client):
        seen.add("command", command)
        text = command.get("text") or ""
        if text.startswith("echo "):
            ack(f"echo: {text[5:]}")
        elif text == "later":
            ack()
            respond("done later")
            respond(text="for everyone", response_type="in_channel")
        else:
            ack()
            opened = client.views_open(trigger_id=command["trigger_id"], view=MODAL)["view"]
            seen.add("opened", opened)
            client.views_update(
                view_id=opened["id"], hash=opened["hash"],
                view={**MODAL, "title": {"type": "plain_text", "text": "Conformance 2"}},
            )

    @app.action("push_more")
    def on_push(ack, body, client):
        ack()
        seen.add("push", body)
        client.views_push(trigger_id=body["trigger_id"], view=PUSHED)

    @app.view("conform_pushed")
    def on_pushed_submit(ack):
        ack()

    @app.view("conform_view")
    def on_submit(ack, body, view, client):
        name = view["state"]["values"]["name_block"]["name"]["value"]
        seen.add("submit", {"body": body, "name": name})
        if len(name) < 2:
            ack(response_action="errors", errors={"name_block": "A name, please"})
            return
        ack()
        client.chat_postMessage(channel=general, text=f"submitted {name} by {body['user']['id']} ({view['private_metadata']})")

    @app.action("approve")
    def on_approve(ack, body, client):
        ack()
        seen.add("approve", body)
        client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], text="approved", blocks=[])

    @app.action("reject")
    def on_reject(ack, body, respond):
        ack()
        seen.add("reject", body)
        respond(text="rejected", replace_original=True)

    return app


def check(sandbox, seen, what, condition):
    assert condition, f"{what}; errors in the app's listeners: {seen.errors}"


def modals(sandbox, user="alice"):
    return [v for v in sandbox.views(user) if v["type"] == "modal"]


def exercise(sandbox, seen, transport):
    alice, bob = sandbox.user_ids["alice"], sandbox.user_ids["bob"]
    general = sandbox.channel_ids["general"]

    # 1. A mention, answered with say() in the thread.
    posted = sandbox.post("/messages", {"user": "alice", "channel": "general", "text": f"<@{sandbox.bot_user_id}> ping"})
    thread = sandbox.thread("general", posted["ts"], wait_for=2, timeout_ms=8000)
    check(sandbox, seen, f"say() answered in the thread: {thread}", [m["text"] for m in thread[1:]] == ["pong"])
    reply = thread[1]
    assert reply["user"] == sandbox.bot_user_id and reply["thread_ts"] == posted["ts"], reply
    [mention] = seen.get("mention")
    assert mention["bot_user_id"] == sandbox.bot_user_id, f"Bolt's auth.test found the bot: {mention}"
    event = mention["event"]
    assert event["user"] == alice and event["channel"] == general and event["ts"] == posted["ts"], event
    sandbox.wait_until("the message event too (message.channels)", lambda: seen.get("message"))

    # 2. A command answered in its ack: the ack's text is shown to the user (ephemeral).
    result = sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": "echo hi"})
    check(sandbox, seen, f"the command was acked: {result}", result.get("error") is None)
    # Bolt acks a text-only reply as a plain-text body over HTTP, as {"text": …} over Socket Mode.
    body = result["ack"].get("body")
    text = body.get("text") if isinstance(body, dict) else body
    assert text == "echo: hi", f"the ack's payload reached the sandbox: {result}"
    ephemerals = sandbox.ephemerals(alice, general, wait_for=1)
    assert any(e["message"]["text"] == "echo: hi" for e in ephemerals), ephemerals
    command = seen.get("command")[0]
    assert command["user_id"] == alice and command["channel_id"] == general and command["command"] == "/conform", command

    # 3. A command answered later through its response_url (respond()): ephemeral, then in_channel.
    before = len(sandbox.messages("general"))
    result = sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": "later"})
    check(sandbox, seen, f"the command was acked: {result}", result.get("error") is None)
    ephemerals = sandbox.ephemerals(alice, general, wait_for=2)
    check(sandbox, seen, f"respond() reached the user: {ephemerals}", any(e["message"]["text"] == "done later" for e in ephemerals))
    messages = sandbox.messages("general", wait_for=before + 1)
    check(sandbox, seen, f"respond(in_channel) posted: {messages[-3:]}", any(m["text"] == "for everyone" for m in messages))

    # 4. A command opens a modal (views.open with its trigger_id), then updates it (views.update).
    result = sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": ""})
    check(sandbox, seen, f"the command was acked: {result}", result.get("error") is None)
    sandbox.wait_until("the updated modal", lambda: [v for v in modals(sandbox) if v["title"]["text"] == "Conformance 2"])
    opened = seen.get("opened")[0]
    assert opened["id"].startswith("V") and opened["callback_id"] == "conform_view" and opened["hash"], opened
    calls = sandbox.api_calls("views.open")
    check(sandbox, seen, f"views.open succeeded: {calls}", calls and all(c["ok"] for c in calls))
    assert all(c["ok"] for c in sandbox.api_calls("views.update")), sandbox.api_calls("views.update")

    # 5. A button in the modal pushes a second view (views.push with the action's trigger_id).
    root = modals(sandbox)[-1]
    clicked = sandbox.post("/actions", {"user": "alice", "view_id": root["id"], "action_id": "push_more"})
    check(sandbox, seen, f"the view action was acked: {clicked}", clicked.get("error") is None)
    stack = sandbox.wait_until("the pushed view", lambda: (lambda s: s if len(s) == 2 else None)(modals(sandbox)))
    assert [v["callback_id"] for v in stack] == ["conform_view", "conform_pushed"], stack
    push = seen.get("push")[0]
    assert push["view"]["id"] == root["id"] and push["actions"][0]["action_id"] == "push_more", push

    # 6. Submitting the pushed view (an empty ack) closes it alone.
    submitted = sandbox.post("/views/submit", {"user": "alice", "values": {}})
    assert submitted["view_closed"] is True, submitted
    stack = modals(sandbox)
    assert [v["callback_id"] for v in stack] == ["conform_view"], f"back to the first view: {stack}"

    # 7. The first view's submission: a validation error keeps it open, then a good one closes it.
    # (An empty required input never reaches the app: Slack's client refuses to submit it.)
    refused = sandbox.control("POST", "/views/submit", {"user": "alice", "values": {"name_block": {"name": ""}}},
                              expect_status="4xx")
    assert refused["ok"] is False, refused
    submitted = sandbox.post("/views/submit", {"user": "alice", "values": {"name_block": {"name": "A"}}})
    check(sandbox, seen, f"the errors ack keeps the view: {submitted}", submitted["view_closed"] is False)
    assert submitted.get("errors") == {"name_block": "A name, please"}, submitted
    submitted = sandbox.post("/views/submit", {"user": "alice", "values": {"name_block": {"name": "Ada"}}})
    assert submitted["view_closed"] is True, submitted
    assert modals(sandbox) == [], modals(sandbox)
    text = f"submitted Ada by {alice} (from-command)"
    sandbox.wait_until("the submission's message", lambda: any(m["text"] == text for m in sandbox.messages("general")))
    body = seen.get("submit")[-1]["body"]
    assert body["type"] == "view_submission" and body["view"]["callback_id"] == "conform_view", body

    # 8. Buttons in a message: chat.update from one handler, respond(replace_original) from another.
    client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url, timeout=10)
    for action, outcome in (("approve", "approved"), ("reject", "rejected")):
        ts = client.chat_postMessage(channel=general, text="decide?", blocks=button_message("approve", "reject"))["ts"]
        clicked = sandbox.post("/actions", {"user": "bob", "channel": "general", "ts": ts, "action_id": action})
        check(sandbox, seen, f"the click was acked: {clicked}", clicked.get("error") is None)
        updated = sandbox.wait_until(
            f"the message {outcome}",
            lambda: next((m for m in sandbox.messages("general") if m["ts"] == ts and m["text"] == outcome), None),
        )
        assert not updated.get("blocks"), f"the buttons are gone: {updated}"
        body = seen.get(action)[0]
        assert body["user"]["id"] == bob and body["message"]["ts"] == ts and body["actions"][0]["value"] == action, body

    # 9. app_home_opened: the app publishes a Home tab.
    sandbox.post("/app_home", {"user": "alice"})
    home = sandbox.wait_until("the Home tab", lambda: [v for v in sandbox.views(alice) if v["type"] == "home"])
    assert home[0]["blocks"][0]["text"]["text"] == "Welcome home", home

    # Every delivery went over this transport and was acked.
    deliveries = sandbox.deliveries()
    assert deliveries, "the control API lists the deliveries"
    for d in deliveries:
        assert d["attempts"] and all(a["transport"] == transport for a in d["attempts"]), d
        assert d["outcome"] == "acked", d
    assert not seen.errors, seen.errors
