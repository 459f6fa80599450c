"""Blocking Command (XEP-0191) with aioxmpp's BlockingClient, summoned before the stream
starts as an application does (it fetches the blocklist while the stream is established):
alice's phone blocks bob; her desk, which also fetched the list, gets the push (the
service's on_jids_blocked signal) and both lists name bob; bob's message to alice bounces
with an error and is not delivered; alice's message to bob is refused with <not-acceptable/>
+ <blocked/>; unblocking is pushed to the desk and messages flow again."""

import asyncio

import aioxmpp
import aioxmpp.blocking
import aioxmpp.xso as xso

from aiox.lib import Fail, body, check, short

USERS = ["alice", "bob"]
NS = "urn:xmpp:blocking"


class BlockedErr(xso.XSO):
    TAG = ("urn:xmpp:blocking:errors", "blocked")


aioxmpp.stanza.Error.as_application_condition(BlockedErr)


async def run(ctx):
    alice_bare = aioxmpp.JID.fromstr(ctx.jid("alice"))
    bob_bare = aioxmpp.JID.fromstr(ctx.jid("bob"))
    BC = aioxmpp.blocking.BlockingClient
    ctx.step("alice logs in on phone and desk with the blocking service; bob on pc")
    phone = await ctx.login("alice", "phone", services=(BC,))
    desk = await ctx.login("alice", "desk", services=(BC,))
    bob = await ctx.login("bob", "pc")
    for c in (phone, desk, bob):
        await c.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE))
    check(phone.summon(BC).blocklist == frozenset(), f"initial list {phone.summon(BC).blocklist}")

    ctx.step("the phone blocks bob; the desk gets the push")
    pushed = asyncio.get_running_loop().create_future()
    desk.summon(BC).on_jids_blocked.connect(
        lambda jids: pushed.done() or pushed.set_result(frozenset(jids)))
    await phone.summon(BC).block_jids([bob_bare])
    try:
        got = await asyncio.wait_for(pushed, 10)
    except asyncio.TimeoutError:
        raise Fail("no block push at the desk within 10s")
    check(got == {bob_bare}, f"block push named {got}")
    check(bob_bare in desk.summon(BC).blocklist and bob_bare in phone.summon(BC).blocklist,
          "bob missing from a device's block list")

    ctx.step("a fresh blocklist query names bob")
    res = await phone.send(aioxmpp.IQ(type_=aioxmpp.IQType.GET,
                                      payload=aioxmpp.blocking.xso.BlockList()))
    check(set(res.items) == {bob_bare}, f"blocklist result {res.items}")

    ctx.step("bob's message bounces and is not delivered")
    await bob.send(bob.message(alice_bare, "let me in", id="blk-1"))
    err = await bob.messages.take(lambda m: m.id_ == "blk-1", "the bounce at bob")
    check(err.type_ == aioxmpp.MessageType.ERROR, f"bob got no error: {short(err)}")
    leaked = await phone.messages.quiet(lambda m: m.id_ == "blk-1", 1.0)
    leaked += await desk.messages.quiet(lambda m: m.id_ == "blk-1", 0.1)
    check(not leaked, f"blocked message delivered: {[short(m) for m in leaked]}")

    ctx.step("alice's message to bob is refused with not-acceptable + blocked")
    await phone.send(phone.message(bob_bare, "hello?", id="blk-2"))
    err = await phone.messages.take(lambda m: m.id_ == "blk-2", "the error at alice")
    check(err.type_ == aioxmpp.MessageType.ERROR and err.error is not None,
          f"not an error: {short(err)}")
    check(err.error.condition == aioxmpp.ErrorCondition.NOT_ACCEPTABLE,
          f"condition {err.error.condition}, expected not-acceptable: {short(err)}")
    check(isinstance(err.error.application_condition, BlockedErr),
          f"no <blocked xmlns='urn:xmpp:blocking:errors'/>: {short(err)}")
    leaked = await bob.messages.quiet(lambda m: m.id_ == "blk-2", 0.5)
    check(not leaked, "alice's message reached the blocked bob")

    ctx.step("unblock: pushed to the desk; messages flow again")
    unpushed = asyncio.get_running_loop().create_future()
    desk.summon(BC).on_jids_unblocked.connect(
        lambda jids: unpushed.done() or unpushed.set_result(frozenset(jids)))
    await phone.summon(BC).unblock_jids([bob_bare])
    try:
        got = await asyncio.wait_for(unpushed, 10)
    except asyncio.TimeoutError:
        raise Fail("no unblock push at the desk within 10s")
    check(got == {bob_bare}, f"unblock push named {got}")
    check(not desk.summon(BC).blocklist, f"desk list after unblock {desk.summon(BC).blocklist}")
    await bob.send(bob.message(alice_bare, "now?", id="blk-3"))
    m = await phone.messages.take(lambda m: m.id_ == "blk-3", "bob's message after unblocking")
    check(body(m) == "now?", f"body {short(m)}")
