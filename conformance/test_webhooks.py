"""Incoming webhooks and response_urls (docs/sandbox.md sections 5 and 6) through slack_sdk's
WebhookClient, the client Bolt's respond() uses."""

from slack_sdk.webhook import WebhookClient

from sandboxlib import manifest

SANDBOX_MANIFEST = manifest(socket_mode=True)


def test_seeded_webhook_posts_into_its_channel(sandbox):
    hooks = {h["channel"]: h["url"] for h in sandbox.info["webhooks"]}
    url = hooks.get(sandbox.channel_ids["alerts"]) or hooks.get("alerts")
    assert url and "/services/T" in url, sandbox.info["webhooks"]
    sent = WebhookClient(url, timeout=10).send(
        text="disk full", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*disk* full"}}]
    )
    assert (sent.status_code, sent.body) == (200, "ok"), (sent.status_code, sent.body)
    last = sandbox.messages("alerts")[-1]
    assert last["text"] == "disk full" and last["blocks"][0]["text"]["text"] == "*disk* full", last
    assert last.get("bot_id"), f"posted as the app: {last}"


def test_new_webhook_and_its_errors(sandbox):
    url = sandbox.post("/webhooks", {"channel": "general"})["url"]
    hook = WebhookClient(url, timeout=10)
    parent = hook.send(text="parent")
    assert parent.status_code == 200, parent.body
    parent_ts = sandbox.messages("general")[-1]["ts"]
    assert hook.send_dict({"text": "in thread", "thread_ts": parent_ts}).status_code == 200
    assert [m["text"] for m in sandbox.thread("general", parent_ts)] == ["parent", "in thread"]

    empty = hook.send_dict({"unfurl_links": False})
    assert (empty.status_code, empty.body) == (400, "no_text"), (empty.status_code, empty.body)
    null = hook.send_dict({})  # slack_sdk sends an empty dict as the JSON `null`
    assert (null.status_code, null.body) == (400, "invalid_payload"), (null.status_code, null.body)
    too_many = hook.send(text="x", blocks=[{"type": "divider"}] * 51)
    assert (too_many.status_code, too_many.body) == (400, "invalid_blocks"), (too_many.status_code, too_many.body)
    gone = WebhookClient(url.rsplit("/", 1)[0] + "/notthesecret", timeout=10).send(text="x")
    assert (gone.status_code, gone.body) == (404, "no_service"), (gone.status_code, gone.body)


def test_archived_channel_webhook(sandbox, alice_client, client):
    room = alice_client.conversations_create(name="hooked")["channel"]["id"]
    url = sandbox.post("/webhooks", {"channel": room})["url"]
    assert WebhookClient(url, timeout=10).send(text="before").status_code == 200
    alice_client.conversations_archive(channel=room)
    after = WebhookClient(url, timeout=10).send(text="after")
    assert (after.status_code, after.body) == (410, "channel_is_archived"), (after.status_code, after.body)


def test_response_url_of_a_command(sandbox):
    # No app is connected (Socket Mode): the command fails for the user, but its response_url
    # is issued and, as in Slack, usable for 30 minutes.
    sandbox.put("/delivery", {"ack_timeout_ms": 200})
    result = sandbox.post("/commands", {"user": "bob", "channel": "general", "command": "/conform", "text": ""})
    sandbox.put("/delivery", {"ack_timeout_ms": 3000})
    assert result.get("error") in ("operation_timeout", "dispatch_failed"), result
    respond = WebhookClient(result["response_url"], timeout=10)
    private = respond.send(text="only bob sees this")
    assert private.status_code == 200, private.body
    bob, general = sandbox.user_ids["bob"], sandbox.channel_ids["general"]
    assert any(e["message"]["text"] == "only bob sees this" for e in sandbox.ephemerals(bob, general, wait_for=1))
    public = respond.send(text="everyone sees this", response_type="in_channel")
    assert public.status_code == 200, public.body
    assert sandbox.messages("general")[-1]["text"] == "everyone sees this"
    # Slack takes five responses per response_url.
    for n in range(3, 6):
        assert respond.send(text=f"response {n}").status_code == 200, n
    sixth = respond.send(text="one too many")
    assert sixth.status_code == 404 and "used_url" in sixth.body, (sixth.status_code, sixth.body)
