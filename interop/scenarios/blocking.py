"""Blocking Command (XEP-0191) with slixmpp's xep_0191: alice blocks bob; her second
resource, which fetched the blocklist, gets the push; bob's message bounces with an error and
does not reach alice; alice's message to bob bounces with <not-acceptable/> and
<blocked xmlns='urn:xmpp:blocking:errors'/>; after unblocking, messages flow again."""

import asyncio

from harness.client import check, error_condition, short
from slixmpp import JID

USERS = ["alice", "bob"]
NS = "urn:xmpp:blocking"


async def run(ctx):
    bob_bare = ctx.jid("bob")
    ctx.step("log in alice twice (both fetch the blocklist) and bob")
    a1 = await ctx.login("alice", resource="one", plugins=("xep_0191",))
    a2 = await ctx.login("alice", resource="two", plugins=("xep_0191",))
    bob = await ctx.login("bob")
    for a in (a1, a2):
        check(await a.plugin["xep_0191"].get_blocked_jids() == set(), "blocklist not empty")
    pushes = asyncio.Queue()
    a2.add_event_handler("blocked", lambda iq: pushes.put_nowait(("block", iq)))
    a2.add_event_handler("unblocked", lambda iq: pushes.put_nowait(("unblock", iq)))

    ctx.step("alice blocks bob; the other resource gets the push; the list shows him")
    await a1.plugin["xep_0191"].block(JID(bob_bare))
    kind, iq = await asyncio.wait_for(pushes.get(), 10)
    items = [i["jid"] for i in iq["block"]["items"]] if kind == "block" else []
    check(kind == "block" and [str(j) for j in items] == [bob_bare], f"push: {short(iq.xml)}")
    check(await a2.plugin["xep_0191"].get_blocked_jids() == {JID(bob_bare)}, "blocklist")

    ctx.step("bob's message to alice bounces and does not reach her")
    bob.message(ctx.jid("alice"), "hello?", id="blocked-in")
    err = await bob.messages.take(lambda m: m["id"] == "blocked-in", "the bounce at bob")
    check(err["type"] == "error", f"not an error: {short(err.xml)}")
    ctx.log.info("inbound blocked message bounced with %s", error_condition(err.xml))
    got = await a1.messages.quiet(lambda m: m["id"] == "blocked-in", 1.0)
    check(not got, "alice got a message from a blocked JID")

    ctx.step("alice's message to bob: <not-acceptable/> with <blocked/>")
    a1.message(bob_bare, "hi", id="blocked-out")
    err = await a1.messages.take(lambda m: m["id"] == "blocked-out", "the error at alice")
    check(err["type"] == "error" and error_condition(err.xml) == "not-acceptable",
          f"error: {short(err.xml)}")
    check(err.xml.find(f".//{{{NS}:errors}}blocked") is not None,
          f"no <blocked/> condition: {short(err.xml)}")

    ctx.step("alice unblocks bob; the push arrives; messages flow again")
    await a1.plugin["xep_0191"].unblock(JID(bob_bare))
    kind, iq = await asyncio.wait_for(pushes.get(), 10)
    check(kind == "unblock", f"push: {short(iq.xml)}")
    bob.message(ctx.jid("alice") + "/one", "again", id="ok-in")
    await a1.messages.take(lambda m: m["id"] == "ok-in", "bob's message after unblocking")
