"""The same app in Bolt for Python (async, aiohttp): reply `pong` in the thread of a mention.

Usage: bolt_python.py PORT API_URL BOT_TOKEN SIGNING_SECRET
"""

import logging
import sys

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

port, api_url, token, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
logging.basicConfig(level=logging.ERROR)
app = AsyncApp(client=AsyncWebClient(token=token, base_url=api_url), signing_secret=secret)


@app.event("app_mention")
async def on_mention(event, say):
    await say(text="pong", thread_ts=event["ts"])


@app.event("message")
async def on_message():
    pass


if __name__ == "__main__":
    print(f"ready on {port}", flush=True)
    app.start(port=port)
