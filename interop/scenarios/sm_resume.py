"""Stream Management (XEP-0198) as slixmpp's xep_0198 plugin uses it: resume after a dropped
socket.

alice enables SM with resumption and gets an SM-ID; bob sends her three messages, which she
reads. Her socket is then aborted (no </stream:stream>), bob sends three more while she is
away, and alice reconnects on a new TCP connection: slixmpp authenticates and sends
<resume previd h/> instead of binding. The server must answer <resumed/>, deliver exactly
the three she missed (in order, none of the first three again), keep her full JID (same
session), and count her stanzas on from the old stream.
"""

import asyncio

from harness.client import check

USERS = ["alice", "bob"]
TIMEOUT = 90
NS_SM = "urn:xmpp:sm:3"
PING = "<ping xmlns='urn:xmpp:ping'/>"


def future_of(client, event):
    fut = asyncio.get_running_loop().create_future()

    def done(stanza):
        if not fut.done():
            fut.set_result(stanza)

    client.add_event_handler(event, done)
    return fut


async def run(ctx):
    alice_full = f"{ctx.jid('alice')}/phone"
    ctx.step("alice logs in with stream management (resume requested)")
    alice = ctx.client(alice_full, plugins=("xep_0198",))
    enabled = future_of(alice, "sm_enabled")
    await alice.start()
    await asyncio.wait_for(enabled, 10)
    sm = alice.plugin["xep_0198"]
    check(sm.sm_id, "<enabled/> without an SM-ID: resumption not offered")
    previd = sm.sm_id
    alice.presence()

    bob = await ctx.login("bob", resource="desk")
    ctx.step("bob sends three messages; alice reads them")
    for i in (1, 2, 3):
        bob.message(alice_full, f"before {i}", id=f"b{i}")
    for i in (1, 2, 3):
        await alice.messages.take(lambda m, i=i: m["id"] == f"b{i}", f"message b{i}")

    ctx.step("alice's socket drops without a stream close")
    resumed = future_of(alice, "session_resumed")
    alice.ended.clear()
    alice.abort()
    await asyncio.wait_for(alice.ended.wait(), 10)

    ctx.step("bob sends three more while alice is away")
    for i in (4, 5, 6):
        bob.message(alice_full, f"missed {i}", id=f"b{i}")
    await bob.iq("get", PING, to=ctx.domain)

    ctx.step("alice reconnects on a new connection and resumes")
    t = ctx.target
    alice.connect(host=t.host, port=t.starttls_port)
    el = await asyncio.wait_for(resumed, 20)
    check(el["previd"] == previd, f"<resumed/> for {el['previd']!r}, expected {previd!r}")
    check(sm.sm_id == previd, "the SM-ID changed on resumption")

    ctx.step("alice gets exactly the three she missed, in order")
    got = []
    for i in (4, 5, 6):
        m = await alice.messages.take(lambda m: m["body"] != "", f"missed message {i}")
        got.append(m["id"])
    check(got == ["b4", "b5", "b6"], f"after resumption got {got}, expected b4, b5, b6")
    extra = await alice.messages.quiet(lambda m: m["body"] != "", 1.5)
    check(not extra, f"delivered twice after resumption: {[m['id'] for m in extra]}")

    ctx.step("the session is the same: same full JID, and acks continue from the old stream")
    alice.message(bob.boundjid.full, "back", id="back")
    m = await bob.messages.take(lambda m: m["id"] == "back", "alice's message after resuming")
    check(str(m["from"]) == alice_full, f"from {m['from']}, expected {alice_full}")
    reply = await alice.iq("get", PING, to=ctx.domain)
    check(reply is not None, "no ping reply after resumption")
    acked = future_of(alice, "stanza_acked")
    sm.request_ack()
    await asyncio.wait_for(acked, 10)
    check(not sm.unacked_queue, f"stanzas left unacknowledged: {len(sm.unacked_queue)}")
