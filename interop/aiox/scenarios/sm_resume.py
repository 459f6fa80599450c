"""Stream Management (XEP-0198) with aioxmpp's built-in support, the way a phone on a flaky
network relies on it: SM is enabled with resumption (an SM-ID); alice reads 3 messages; her
socket is aborted (no stream close); bob sends 3 more meanwhile; aioxmpp reconnects by
itself, authenticates and resumes: the client reports a resumption (not a new session), the
same SM-ID and full JID, exactly the 3 missed messages in order and nothing twice; what
alice sends afterwards reaches bob and her unacked queue empties."""

import asyncio
import datetime

import aioxmpp

from aiox.lib import body, check, short

USERS = ["alice", "bob"]
TIMEOUT = 90


async def run(ctx):
    alice_bare = aioxmpp.JID.fromstr(ctx.jid("alice"))
    ctx.step("alice logs in: stream management enabled with resumption")
    alice = await ctx.login("alice", "phone")
    bob = await ctx.login("bob", "pc")
    for c in (alice, bob):
        await c.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE))
    st = alice.stream
    check(st.sm_enabled, "stream management not enabled (server offers no <sm xmlns='urn:xmpp:sm:3'/>?)")
    check(st.sm_resumable, "SM enabled without resumption (<enabled/> lacks resume='true' / id)")
    sm_id = st.sm_id
    check(sm_id, f"no SM-ID in <enabled/>: {sm_id!r}")
    full = alice.jid

    ctx.step("3 messages read before the drop")
    for i in range(3):
        await bob.send(bob.message(alice_bare, f"before {i}", id=f"b-{i}"))
    for i in range(3):
        m = await alice.messages.take(lambda m: m.id_ == f"b-{i}", f"message before {i}")
        check(body(m) == f"before {i}", f"body: {short(m)}")
    # let alice's acks for them reach the server (aioxmpp answers every <r/>)
    await asyncio.sleep(1.0)

    ctx.step("abort alice's socket; bob sends 3 more while she is away")
    events = []
    alice.client.on_stream_suspended.connect(lambda *a: events.append("suspended"))
    alice.client.on_stream_destroyed.connect(lambda *a: events.append("destroyed"))
    resumed = asyncio.get_running_loop().create_future()
    alice.client.on_stream_resumed.connect(
        lambda *a: resumed.done() or resumed.set_result(True))
    alice.client.backoff_start = datetime.timedelta(seconds=2)
    # The socket is closed under aioxmpp as if the network reported a reset (a plain abort()
    # reads as a clean close to aioxmpp, which then stops instead of reconnecting).
    alice.transport()._force_close(ConnectionResetError("interop: network dropped"))
    for i in range(3):
        await bob.send(bob.message(alice_bare, f"missed {i}", id=f"m-{i}"))

    ctx.step("aioxmpp reconnects and resumes")
    try:
        await asyncio.wait_for(resumed, 20)
    except asyncio.TimeoutError:
        check(False, f"no resumption within 20s (events {events}, failures {alice.failures})")
    check("destroyed" not in events, f"the stream was destroyed, not resumed: {events}")
    check(alice.stream.sm_id == sm_id, f"SM-ID changed {sm_id} -> {alice.stream.sm_id}")
    check(alice.jid == full, f"full JID changed {full} -> {alice.jid}")

    ctx.step("exactly the 3 missed messages, in order, nothing twice")
    for i in range(3):
        m = await alice.messages.take(lambda m: m.id_ is not None and m.id_.startswith(("m-", "b-")),
                                      f"missed message {i}", timeout=10)
        check(m.id_ == f"m-{i}" and body(m) == f"missed {i}",
              f"expected missed {i}, got {short(m)}")
    extra = await alice.messages.quiet(lambda m: m.id_ is not None
                                       and m.id_.startswith(("m-", "b-")), 1.5)
    check(not extra, f"messages delivered twice: {[short(m) for m in extra]}")

    ctx.step("after the resumption alice's messages reach bob and get acked")
    await alice.send(alice.message(ctx.jid("bob"), "back again", id="after-1"))
    m = await bob.messages.take(lambda m: m.id_ == "after-1", "alice's message after resuming")
    check(m.from_ == full and body(m) == "back again", f"at bob: {short(m)}")
    for _ in range(50):
        if not alice.stream.sm_unacked_list:
            break
        await asyncio.sleep(0.1)
    check(not alice.stream.sm_unacked_list,
          f"{len(alice.stream.sm_unacked_list)} stanzas still unacked after 5s")
