"""Client State Indication (XEP-0352) with slixmpp's xep_0352 plugin.

alice and bob are subscribed to each other. alice's client says it is <inactive/>; bob
changes his status three times: alice must get none of it for a while. She says <active/>
and must get bob's latest status (xa). Inactive again, a chat message from bob must arrive
at once (messages are not held).

alice sends nothing between <inactive/> and what is checked (a short sleep instead of a ping
barrier): Prosody's mod_csi_simple treats any client activity as a reason to flush and to stay
flushing for a few seconds.
"""

import asyncio

from harness.client import check

USERS = ["alice", "bob"]
TIMEOUT = 90
PING = "<ping xmlns='urn:xmpp:ping'/>"


async def subscribe(ctx, a, b):
    for x, y in ((a, b), (b, a)):
        x.presence(to=ctx.jid(y.boundjid.user), type="subscribe")
        await y.presences.take(lambda p: p["type"] == "subscribe", "subscription request")
        y.presence(to=ctx.jid(x.boundjid.user), type="subscribed")
        await x.presences.take(lambda p: p["type"] == "subscribed", "subscription approval")


async def run(ctx):
    ctx.step("alice (with CSI) and bob log in and subscribe both ways")
    alice = await ctx.login("alice", resource="phone", roster=True, plugins=("xep_0352",))
    bob = await ctx.login("bob", resource="desk", roster=True)
    check(alice.plugin["xep_0352"].enabled, "no <csi xmlns='urn:xmpp:csi:0'/> stream feature")
    await subscribe(ctx, alice, bob)
    bob.presence()
    bob_full = bob.boundjid.full
    await alice.presences.take(lambda p: str(p["from"]) == bob_full and p["type"] == "available",
                               "bob's presence")

    ctx.step("alice goes inactive; bob's status changes are held back")
    alice.plugin["xep_0352"].send_inactive()
    await asyncio.sleep(0.5)
    alice.presences.items.clear()
    for show in ("away", "dnd", "xa"):
        bob.make_presence(pshow=show).send()
    await bob.iq("get", PING, to=ctx.domain)
    early = await alice.presences.quiet(lambda p: str(p["from"]) == bob_full, 2.0)
    check(not early, f"presence delivered while inactive: {[p['show'] for p in early]}")

    ctx.step("alice goes active: bob's latest status arrives")
    alice.plugin["xep_0352"].send_active()
    await alice.iq("get", PING, to=ctx.domain)
    await asyncio.sleep(0.5)
    from_bob = [p for p in alice.presences.items if str(p["from"]) == bob_full]
    check(from_bob, "nothing flushed on <active/>")
    check(from_bob[-1]["show"] == "xa",
          f"latest presence after <active/> has show {from_bob[-1]['show']!r}, expected 'xa'")

    ctx.step("inactive again: a chat message is delivered at once")
    alice.plugin["xep_0352"].send_inactive()
    await asyncio.sleep(0.5)
    bob.message(alice.boundjid.full, "wake up", id="urgent")
    m = await alice.messages.take(lambda m: m["id"] == "urgent", "a message while inactive",
                                  timeout=3)
    check(m["body"] == "wake up", f"body {m['body']!r}")
