"""slack_sdk's own Socket Mode client (the one Bolt uses) against the sandbox (docs/sandbox.md
section 3): hello, envelopes and acks, retries of unacked events, ack payloads, operation_timeout,
disconnect and reconnect, injected duplicates and drops, the 10-connection limit, one connection per
ticket; and, with the trigger_ids it receives, the views lifecycle (exchanged triggers, hash
conflicts, push limit, response_action update/clear, view_closed) and the shapes of workspace events."""

import json
import threading
import time

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse

from sandboxlib import manifest

SANDBOX_MANIFEST = manifest(socket_mode=True, bot_events=["app_mention"])


class Recording:
    """Every message the client got (raw) and every request, acked unless `should_ack` says no."""

    def __init__(self):
        self.raw = []
        self.frames = []
        self.requests = []
        self.cond = threading.Condition()
        self.should_ack = lambda req: True
        self.ack_payload = lambda req: None

    def on_message(self, client, message, raw):
        with self.cond:
            self.raw.append(message)
            self.cond.notify_all()

    def on_request(self, client, req):
        if self.should_ack(req):
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id, payload=self.ack_payload(req)))
        with self.cond:
            self.requests.append(req)
            self.cond.notify_all()

    def wait(self, what, predicate, count=1, timeout=8.0, source="requests"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [r for r in getattr(self, source) if predicate(r)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {[getattr(r, 'type', r) for r in getattr(self, source)]}")
                self.cond.wait(left)


@pytest.fixture(scope="module")
def connected(sandbox):
    """One slack_sdk SocketModeClient for the module (connecting and closing take about a second)."""
    rec = Recording()
    client = SocketModeClient(
        app_token=sandbox.app_token,
        web_client=WebClient(base_url=sandbox.api_url, timeout=10),
        ping_interval=0.5,  # the SDK takes 5 failed pings to notice a dead connection
    )
    client.message_listeners.append(rec.on_message)
    client.socket_mode_request_listeners.append(rec.on_request)
    # Raw text of every frame, `disconnect` included (the SDK handles that one without listeners).
    client.on_message_listeners.append(lambda raw: rec.frames.append(json.loads(raw)))
    client.connect()
    try:
        rec.wait("hello", lambda m: m.get("type") == "hello", source="raw")
        yield rec
    finally:
        client.close()


@pytest.fixture
def socket(sandbox, connected):
    sandbox.control("DELETE", "/faults")
    sandbox.put("/delivery", {"retry_delays_ms": [0, 200, 500], "ack_timeout_ms": 3000})
    connected.should_ack = lambda req: True
    connected.ack_payload = lambda req: None
    with connected.cond:
        connected.requests.clear()
    yield connected
    sandbox.control("DELETE", "/faults")
    sandbox.put("/delivery", {"ack_timeout_ms": 3000})


def mention(sandbox, text):
    return sandbox.post("/messages", {"user": "alice", "channel": "general", "text": f"<@{sandbox.bot_user_id}> {text}"})


def events_with_text(text):
    return lambda r: r.type == "events_api" and text in r.payload["event"].get("text", "")


def test_hello_and_an_events_api_envelope(sandbox, socket):
    hello = next(m for m in socket.raw if m.get("type") == "hello")
    assert hello["num_connections"] == 1, hello
    posted = mention(sandbox, "envelope")
    [req] = socket.wait("the events_api envelope", events_with_text("envelope"))
    assert req.envelope_id and req.accepts_response_payload is False, vars(req)
    assert req.retry_attempt == 0 and req.retry_reason == "", vars(req)
    payload = req.payload
    assert payload["type"] == "event_callback" and payload["event_id"] in posted["event_ids"], payload
    assert payload["team_id"] == sandbox.team_id and payload["api_app_id"] == sandbox.app_id, payload
    assert payload["event"]["type"] == "app_mention" and payload["event"]["ts"] == posted["ts"], payload
    delivery = sandbox.wait_until(
        "the delivery to be acked",
        lambda: next((d for d in sandbox.deliveries() if d.get("event_id") == payload["event_id"] and d["acked"]), None),
    )
    assert delivery["outcome"] == "acked" and delivery["attempts"][0]["transport"] == "socket_mode", delivery


def test_an_unacked_event_is_sent_again(sandbox, socket):
    sandbox.put("/delivery", {"ack_timeout_ms": 300})
    socket.should_ack = lambda req: req.retry_attempt != 0  # ignore the first try
    mention(sandbox, "unacked")
    first, retry = socket.wait("the retried envelope", events_with_text("unacked"), count=2)
    assert retry.retry_attempt == 1 and retry.retry_reason == "timeout", vars(retry)
    assert first.payload["event_id"] == retry.payload["event_id"], "the same event, retried"
    delivery = sandbox.wait_until(
        "the delivery to be acked",
        lambda: next((d for d in sandbox.deliveries() if d.get("event_id") == first.payload["event_id"] and d["acked"]), None),
    )
    assert [a["retry_num"] for a in delivery["attempts"]] == [0, 1], delivery


def test_command_ack_payload_and_operation_timeout(sandbox, socket):
    socket.ack_payload = lambda req: {"text": "got it"} if req.type == "slash_commands" else None
    result = sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": "a"})
    [req] = socket.wait("the slash_commands envelope", lambda r: r.type == "slash_commands")
    assert req.accepts_response_payload is True, vars(req)
    assert req.payload["command"] == "/conform" and req.payload["text"] == "a", req.payload
    assert req.payload["trigger_id"] == result["trigger_id"], (req.payload, result)
    assert result.get("error") is None and result["ack"]["body"] == {"text": "got it"}, result

    sandbox.put("/delivery", {"ack_timeout_ms": 300})
    socket.should_ack = lambda req: False
    started = time.monotonic()
    result = sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": "b"})
    assert result.get("error") == "operation_timeout", result
    assert time.monotonic() - started < 3, "the sandbox used ack_timeout_ms"
    time.sleep(0.3)
    assert len([r for r in socket.requests if r.type == "slash_commands"]) == 2, "commands are not retried"


def test_refresh_requested_disconnect_reconnects(sandbox, socket):
    opened = len(sandbox.api_calls("apps.connections.open"))
    before = sandbox.get("/socket")["connections"]
    sandbox.post("/socket/disconnect", {"reason": "refresh_requested"})
    # slack_sdk answers a `disconnect` message by opening a new connection.
    sandbox.wait_until(
        "a new connection",
        lambda: (lambda now: now and set(now) != set(before))(sandbox.get("/socket")["connections"]),
    )
    disconnect = next((m for m in socket.frames if m.get("type") == "disconnect"), None)
    assert disconnect and disconnect["reason"] == "refresh_requested", socket.frames
    assert len(sandbox.api_calls("apps.connections.open")) == opened + 1
    time.sleep(1.2)  # the old connection is closed 1 s after the disconnect message
    assert len(sandbox.get("/socket")["connections"]) == 1, sandbox.get("/socket")
    mention(sandbox, "after refresh")
    socket.wait("an event over the new connection", events_with_text("after refresh"))


def test_socket_duplicate_fault(sandbox, socket):
    sandbox.post("/faults", {"target": "socket", "fault": "duplicate", "times": 1})
    mention(sandbox, "dup")
    socket.wait("the duplicated envelope", events_with_text("dup"), count=2)
    time.sleep(0.5)  # anything more would come at once: the first copy was acked
    found = [r for r in socket.requests if events_with_text("dup")(r)]
    assert [(r.retry_attempt, r.retry_reason) for r in found] == [(0, ""), (1, "timeout")], (
        f"sent twice, the second as a retry: {[(r.envelope_id, r.retry_attempt, r.retry_reason) for r in found]}"
    )
    assert found[0].payload["event_id"] == found[1].payload["event_id"], "the same event"


MODAL = {
    "type": "modal",
    "callback_id": "stack",
    "notify_on_close": True,
    "title": {"type": "plain_text", "text": "Stack"},
    "submit": {"type": "plain_text", "text": "OK"},
    "blocks": [
        {"type": "input", "block_id": "b", "label": {"type": "plain_text", "text": "B"},
         "element": {"type": "plain_text_input", "action_id": "a"}},
        {"type": "actions", "block_id": "more",
         "elements": [{"type": "button", "action_id": "more", "text": {"type": "plain_text", "text": "More"}}]},
    ],
}


def titled(title):
    return {**MODAL, "title": {"type": "plain_text", "text": title}}


def modals(sandbox, user="carol"):
    return [v for v in sandbox.views(user) if v["type"] == "modal"]


def test_trigger_ids_views_stack_and_limits(sandbox, socket, client):
    """views.open/push/update with real trigger_ids, as Slack enforces them."""
    result = sandbox.post("/commands", {"user": "carol", "channel": "general", "command": "/conform", "text": ""})
    trigger = result["trigger_id"]
    opened = client.views_open(trigger_id=trigger, view=titled("One"))["view"]
    assert opened["id"].startswith("V") and opened["hash"] and opened["root_view_id"] == opened["id"], opened
    err = pytest.raises(SlackApiError, client.views_open, trigger_id=trigger, view=titled("Again")).value.response
    assert err["error"] == "exchanged_trigger_id", f"a trigger_id is good for one view: {err.data}"

    err = pytest.raises(SlackApiError, client.views_update, view_id=opened["id"], hash="stale", view=titled("x")).value.response
    assert err["error"] == "hash_conflict", err.data
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=titled("One'"))["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"], updated

    # Each click on the view's button is an interaction with a fresh trigger_id: push, push, push.
    for n, title in enumerate(["Two", "Three", "Four"], start=1):
        top = modals(sandbox)[-1]
        sandbox.post("/actions", {"user": "carol", "view_id": top["id"], "action_id": "more"})
        [req] = socket.wait(f"click {n}", lambda r: r.type == "interactive" and r.payload.get("type") == "block_actions", count=n)[-1:]
        assert req.payload["view"]["id"] == top["id"] and req.payload["container"]["type"] == "view", req.payload
        if title != "Four":
            client.views_push(trigger_id=req.payload["trigger_id"], view=titled(title))
        else:
            err = pytest.raises(SlackApiError, client.views_push, trigger_id=req.payload["trigger_id"], view=titled(title)).value.response
            assert err["error"] == "push_limit_reached", f"three views at most: {err.data}"
    assert [v["title"]["text"] for v in modals(sandbox)] == ["One'", "Two", "Three"], modals(sandbox)

    # view_submission with response_action "update", then "clear" closes the whole stack.
    socket.ack_payload = lambda r: (
        {"response_action": "update", "view": titled("Three'")} if r.payload.get("type") == "view_submission"
        and r.payload["view"]["title"]["text"] == "Three" else
        {"response_action": "clear"} if r.payload.get("type") == "view_submission" else None
    )
    submitted = sandbox.post("/views/submit", {"user": "carol", "values": {"b": {"a": "x"}}})
    assert submitted["view_closed"] is False, submitted
    [sub] = socket.wait("the view_submission", lambda r: r.payload.get("type") == "view_submission")
    assert sub.accepts_response_payload is True, vars(sub)
    assert sub.payload["view"]["state"]["values"]["b"]["a"] == {"type": "plain_text_input", "value": "x"}, sub.payload
    assert [v["title"]["text"] for v in modals(sandbox)] == ["One'", "Two", "Three'"], modals(sandbox)
    submitted = sandbox.post("/views/submit", {"user": "carol", "values": {"b": {"a": "y"}}})
    assert submitted["view_closed"] is True and modals(sandbox) == [], (submitted, modals(sandbox))


def test_view_closed_is_sent_when_asked(sandbox, socket, client):
    result = sandbox.post("/commands", {"user": "carol", "channel": "general", "command": "/conform", "text": ""})
    view = client.views_open(trigger_id=result["trigger_id"], view=titled("Closable"))["view"]
    assert sandbox.post("/views/close", {"user": "carol"})["ok"] is True
    [closed] = socket.wait("view_closed", lambda r: r.type == "interactive" and r.payload.get("type") == "view_closed")
    assert closed.payload["view"]["id"] == view["id"] and closed.payload["user"]["id"] == sandbox.user_ids["carol"], closed.payload
    assert modals(sandbox) == []


def test_workspace_events_have_slacks_shapes(sandbox, socket, client):
    sandbox.set_manifest(manifest(socket_mode=True, bot_events=[
        "app_mention", "message.channels", "reaction_added", "reaction_removed",
        "member_joined_channel", "member_left_channel"]))
    try:
        parent = sandbox.post("/messages", {"user": "alice", "channel": "general", "text": "parent"})
        reply = sandbox.post("/messages", {"user": "bob", "channel": "general", "text": f"<@{sandbox.bot_user_id}> in thread",
                                           "thread_ts": parent["ts"]})
        msg = socket.wait("the thread reply's message event", lambda r: r.payload.get("event", {}).get("type") == "message"
                          and r.payload["event"].get("ts") == reply["ts"])[0].payload["event"]
        assert msg["thread_ts"] == parent["ts"] and msg["channel_type"] == "channel", msg
        men = socket.wait("the app_mention in the thread", lambda r: r.payload.get("event", {}).get("type") == "app_mention")[0]
        assert men.payload["event"]["thread_ts"] == parent["ts"], men.payload

        sandbox.post("/reactions", {"user": "carol", "channel": "general", "ts": parent["ts"], "name": "tada"})
        added = socket.wait("reaction_added", lambda r: r.payload.get("event", {}).get("type") == "reaction_added")[0].payload["event"]
        assert added["user"] == sandbox.user_ids["carol"] and added["reaction"] == "tada", added
        assert added["item"] == {"type": "message", "channel": sandbox.channel_ids["general"], "ts": parent["ts"]}, added
        assert added["item_user"] == sandbox.user_ids["alice"], added
        sandbox.post("/reactions/remove", {"user": "carol", "channel": "general", "ts": parent["ts"], "name": "tada"})
        socket.wait("reaction_removed", lambda r: r.payload.get("event", {}).get("type") == "reaction_removed")

        sandbox.post("/channels/join", {"user": "carol", "channel": "alerts"})
        joined = socket.wait("member_joined_channel", lambda r: r.payload.get("event", {}).get("type") == "member_joined_channel")[0].payload["event"]
        assert joined["user"] == sandbox.user_ids["carol"] and joined["channel"] == sandbox.channel_ids["alerts"], joined
        sandbox.post("/channels/leave", {"user": "carol", "channel": "alerts"})
        socket.wait("member_left_channel", lambda r: r.payload.get("event", {}).get("type") == "member_left_channel")
        # The app hears its own messages too (Bolt drops them by their bot_id, from auth.test).
        own = client.chat_postMessage(channel=sandbox.channel_ids["general"], text="my own words")
        mine = socket.wait("the bot's own message event", lambda r: r.payload.get("event", {}).get("ts") == own["ts"])[0]
        event = mine.payload["event"]
        assert event["bot_id"] == client.auth_test()["bot_id"] and event["user"] == sandbox.bot_user_id, event
        # Edits and deletions reach a message.channels subscriber as subtyped message events.
        alice = WebClient(token=sandbox.user_tokens["alice"], base_url=sandbox.api_url, timeout=10)
        mine = alice.chat_postMessage(channel=sandbox.channel_ids["general"], text="draft")["ts"]
        alice.chat_update(channel=sandbox.channel_ids["general"], ts=mine, text="final")
        alice.chat_delete(channel=sandbox.channel_ids["general"], ts=mine)
        for subtype in ("message_changed", "message_deleted"):
            found = socket.wait(subtype, lambda r: r.payload.get("event", {}).get("subtype") == subtype)[0].payload["event"]
            assert found["channel"] == sandbox.channel_ids["general"], found
        changed = next(r.payload["event"] for r in socket.requests if r.payload.get("event", {}).get("subtype") == "message_changed")
        assert changed["message"]["ts"] == mine and changed["message"]["text"] == "final", changed
        deleted = next(r.payload["event"] for r in socket.requests if r.payload.get("event", {}).get("subtype") == "message_deleted")
        assert deleted["deleted_ts"] == mine, deleted
        # The bot is not in #ops: no message events from there.
        sandbox.post("/messages", {"user": "alice", "channel": "ops", "text": "secret"})
        time.sleep(0.3)
        assert not [r for r in socket.requests if r.payload.get("event", {}).get("text") == "secret"], "#ops is not the bot's"
    finally:
        sandbox.set_manifest(SANDBOX_MANIFEST)


def test_drop_fault_then_the_event_is_retried_on_a_new_connection(sandbox, socket):
    # slack_sdk notices a dead connection after 5 failed pings (here 2.5 s) and reconnects; Slack's
    # own schedule (1 min, 5 min) leaves it the time, ours is shortened to a margin over that.
    sandbox.put("/delivery", {"ack_timeout_ms": 500, "retry_delays_ms": [0, 4000, 4000]})
    before = set(sandbox.get("/socket")["connections"])
    sandbox.post("/faults", {"target": "socket", "fault": "drop", "times": 1})
    mention(sandbox, "dropped")
    retried = socket.wait("the event again", lambda r: events_with_text("dropped")(r) and r.retry_attempt >= 1, timeout=10)
    first = next(r for r in socket.requests if events_with_text("dropped")(r))
    assert first.retry_attempt == 0 and retried[0].payload["event_id"] == first.payload["event_id"], vars(retried[0])
    assert retried[0].retry_reason, f"a retry says why: {vars(retried[0])}"
    now = set(sandbox.get("/socket")["connections"])
    assert now and not (now & before), f"a new connection: {before} -> {now}"


def test_an_eleventh_connection_is_turned_away(sandbox, socket):
    from rawws import RawWebSocket

    app_client = WebClient(token=sandbox.app_token, base_url=sandbox.api_url, timeout=10)
    opened = []
    try:
        # The SDK's connection is one; nine more make ten, Slack's limit.
        for n in range(2, 11):
            ws = RawWebSocket(app_client.apps_connections_open(app_token=sandbox.app_token)["url"])
            opened.append(ws)
            hello = ws.recv_json()
            assert ws.status == 101 and hello["type"] == "hello" and hello["num_connections"] == n, hello
        eleventh = RawWebSocket(app_client.apps_connections_open(app_token=sandbox.app_token)["url"])
        opened.append(eleventh)
        message = eleventh.recv_json()
        assert message == {**message, "type": "disconnect", "reason": "too_many_websockets"}, message
        try:
            while eleventh.recv_json() is not None:  # a close frame ends it
                pass
            closed = True
        except TimeoutError:
            closed = False
        except OSError:  # ConnectionError included: the TCP connection was closed
            closed = True
        assert closed, "the 11th connection is closed after its disconnect message"
        assert len(sandbox.get("/socket")["connections"]) == 10
    finally:
        for ws in opened:
            ws.close()
    sandbox.wait_until("back to one connection", lambda: len(sandbox.get("/socket")["connections"]) == 1)


def test_a_ticket_is_good_for_one_connection(sandbox, socket):
    from rawws import RawWebSocket

    url = WebClient(token=sandbox.app_token, base_url=sandbox.api_url, timeout=10).apps_connections_open(app_token=sandbox.app_token)["url"]
    first = RawWebSocket(url)
    try:
        assert first.status == 101 and first.recv_json()["type"] == "hello"
        try:
            second = RawWebSocket(url)
        except ConnectionError:
            return  # refused at the handshake: fine
        try:
            assert second.status != 101, "a used ticket opened a second connection"
        finally:
            second.close()
    finally:
        first.close()


def test_a_modal_holds_at_most_100_blocks(sandbox, socket, client):
    trigger = sandbox.post("/commands", {"user": "carol", "channel": "general", "command": "/conform", "text": ""})["trigger_id"]
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Big"}}
    err = pytest.raises(SlackApiError, client.views_open, trigger_id=trigger,
                        view={**view, "blocks": [{"type": "divider"}] * 101}).value.response
    assert err["error"] == "invalid_arguments" and err["response_metadata"]["messages"], err.data
    # A refused call does not use the trigger up.
    opened = client.views_open(trigger_id=trigger, view={**view, "blocks": [{"type": "divider"}] * 100})
    assert len(opened["view"]["blocks"]) == 100
    sandbox.post("/views/close", {"user": "carol"})
