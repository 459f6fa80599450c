"""Push Notifications (XEP-0357), user's-server side. alice's phone finds `urn:xmpp:push:0` on
her account, enables push for a node with publish-options (a secret), and disconnects; bob
writes to her; the app server's push service (a second slixmpp client, logged in as the local
account pushserver with resource `app`) receives the pubsub publish: from the server's domain
(XEP-0357 0.3+), for the node, with the `urn:xmpp:push:summary` form (a message-count) and the
publish-options, without the message text. It answers with a result. alice logs in again, gets
the message from offline storage, disables push and leaves; bob's next message wakes nobody.

slixmpp 1.17 has no xep_0357 plugin, so enable/disable are sent as raw IQs by a slixmpp
client. Prosody needs the community module mod_cloud_notify (Debian `prosody-modules`,
installed by interop/run for `--target prosody`)."""

import xml.etree.ElementTree as ET

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness.client import Inbox, check, q, short

USERS = ["alice", "bob", "pushserver"]
PROSODY_MODULES = ["cloud_notify"]
PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
DISCO = "http://jabber.org/protocol/disco#info"
NODE = "interop-node-1"
SECRET = "eruio234vzxc2kla-91"
TEXT = "a private text the push service must not see"


def fields(x: ET.Element) -> dict[str, str]:
    out = {}
    for f in x.findall(q(DATA, "field")):
        out[f.get("var", "")] = f.findtext(q(DATA, "value")) or ""
    return out


async def subscribe_both_ways(a, b, a_bare: str, b_bare: str):
    for x, y, y_bare, x_bare in ((a, b, b_bare, a_bare), (b, a, a_bare, b_bare)):
        x.presence(to=y_bare, type="subscribe")
        await y.presences.take(lambda p: str(p["from"]) == x_bare
                               and p.xml.get("type") == "subscribe",
                               f"subscription request from {x_bare}")
        y.presence(to=x_bare, type="subscribed")
        await x.presences.take(lambda p: str(p["from"]).startswith(y_bare)
                               and p.xml.get("type") is None,
                               f"{y_bare}'s presence at {x_bare}")


async def run(ctx):
    alice_bare, bob_bare = ctx.jid("alice"), ctx.jid("bob")
    app_jid = f"{ctx.jid('pushserver')}/app"

    ctx.step("the push service logs in and answers every publish with a result")
    app = await ctx.login("pushserver", resource="app", presence=False)
    publishes = Inbox("publishes")

    def on_publish(iq):
        publishes.put(iq)
        iq.reply(clear=True).send()

    app.register_handler(Callback(
        "push publish", MatchXPath(f"{{jabber:client}}iq/{{{PUBSUB}}}pubsub"), on_publish))

    ctx.step("alice and bob log in and subscribe to each other")
    phone = await ctx.login("alice", resource="phone", roster=True)
    bob = await ctx.login("bob", resource="pc", roster=True)
    await subscribe_both_ways(phone, bob, alice_bare, bob_bare)

    ctx.step("disco#info of alice's account lists urn:xmpp:push:0")
    info = await phone.iq("get", f"<query xmlns='{DISCO}'/>", to=alice_bare)
    feats = {f.get("var") for f in info.findall(f"{q(DISCO, 'query')}/{q(DISCO, 'feature')}")}
    check(PUSH in feats, f"no {PUSH} in {sorted(f for f in feats if f)}")

    ctx.step("alice enables push for the node with publish-options")
    await phone.iq("set", f"<enable xmlns='{PUSH}' jid='{app_jid}' node='{NODE}'>"
                          f"<x xmlns='{DATA}' type='submit'>"
                          f"<field var='FORM_TYPE'><value>{PUBSUB}#publish-options</value></field>"
                          f"<field var='secret'><value>{SECRET}</value></field></x></enable>")

    ctx.step("alice's phone disconnects; bob sees her leave")
    await phone.stop()
    await bob.presences.take(lambda p: str(p["from"]).startswith(alice_bare)
                             and p.xml.get("type") == "unavailable", "alice unavailable")

    ctx.step("bob writes to alice: the push service gets one publish")
    bob.message(alice_bare, TEXT, id="push-1")
    iq = await publishes.take(lambda iq: True, "a publish at the push service", timeout=15)
    x = iq.xml
    check(x.get("type") == "set", f"not a set: {short(x)}")
    check(x.get("from") == ctx.domain, f"publish not from the server's domain: {short(x)}")
    check(x.get("to") == app_jid, f"publish to: {short(x)}")
    publish = x.find(f"{q(PUBSUB, 'pubsub')}/{q(PUBSUB, 'publish')}")
    check(publish is not None and publish.get("node") == NODE, f"node: {short(x, 600)}")
    form = publish.find(f"{q(PUBSUB, 'item')}/{q(PUSH, 'notification')}/{q(DATA, 'x')}")
    check(form is not None, f"no notification form: {short(x, 600)}")
    summary = fields(form)
    check(summary.get("FORM_TYPE") == "urn:xmpp:push:summary", f"FORM_TYPE: {summary}")
    check(summary.get("message-count", "").isdigit() and int(summary["message-count"]) >= 1,
          f"message-count: {summary}")
    check(TEXT not in ET.tostring(x, encoding="unicode"), f"the text leaked: {short(x, 600)}")
    opts = x.find(f"{q(PUBSUB, 'pubsub')}/{q(PUBSUB, 'publish-options')}/{q(DATA, 'x')}")
    check(opts is not None and fields(opts).get("secret") == SECRET,
          f"publish-options: {short(x, 800)}")

    ctx.step("alice logs in again: the message waited offline; she disables push and leaves")
    phone = await ctx.login("alice", resource="phone", roster=True)
    m = await phone.messages.take(lambda m: m["id"] == "push-1", "the offline message")
    check(m["body"] == TEXT, f"body: {short(m.xml)}")
    await phone.iq("set", f"<disable xmlns='{PUSH}' jid='{app_jid}' node='{NODE}'/>")
    await phone.stop()
    await bob.presences.take(lambda p: str(p["from"]).startswith(alice_bare)
                             and p.xml.get("type") == "unavailable", "alice unavailable again")

    ctx.step("bob writes again: no publish after disable")
    publishes.items.clear()
    bob.message(alice_bare, "second", id="push-2")
    extra = await publishes.quiet(lambda iq: True, 2.0)
    check(not extra, f"published after disable: {[short(i.xml) for i in extra]}")
