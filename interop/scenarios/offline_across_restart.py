"""Messages to an offline account survive a server restart (RFC 6121 8.5.2.2.1, XEP-0160).

bob is offline; alice sends three chat messages to bob's bare JID; the server is stopped with
SIGTERM (it must exit 0) and started again; bob logs in, sends initial presence and receives
the three in order, each with its body, alice as sender and a XEP-0203 <delay/> stamp from
before the restart. A second login of bob gets none of them again (delivered means removed).
"""

import datetime as dt

from harness.client import Fail, check, q

USERS = ["alice", "bob"]
TIMEOUT = 90
NS_DELAY = "urn:xmpp:delay"


def parse_stamp(stamp: str) -> dt.datetime:
    # XEP-0082 DateTime: CCYY-MM-DDThh:mm:ss[.sss]TZD
    s = stamp.strip().replace("Z", "+00:00")
    return dt.datetime.fromisoformat(s)


async def run(ctx):
    bob_bare = ctx.jid("bob")
    ctx.step("alice logs in")
    alice = await ctx.login("alice", resource="desk")
    alice_full = str(alice.boundjid)
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=2)

    bodies = [f"offline message {i} of 3 <&> ✓" for i in (1, 2, 3)]
    ctx.step("alice sends three messages to offline bob")
    for i, body in enumerate(bodies, 1):
        alice.message(bob_bare, body, id=f"off-{i}")
    # A round trip through the server after the three: they have been handled by then.
    await alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=ctx.domain)
    bounced = await alice.messages.quiet(lambda m: m.xml.get("type") == "error", 0.5)
    check(not bounced, f"messages to offline bob bounced: {bounced[0] if bounced else ''}")
    sent_by = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)

    ctx.step("stop the server with SIGTERM and start it again")
    code = await ctx.restart_server()
    check(code == 0, f"server exited with {code} on SIGTERM (expected 0)")

    ctx.step("bob logs in and sends initial presence")
    bob = await ctx.login("bob", resource="home")
    got = []
    for i in range(3):
        ctx.step(f"bob receives offline message {i + 1}")
        m = await bob.messages.take(lambda m: m["body"] != "", f"offline message {i + 1}",
                                    timeout=10)
        got.append(m)
    for i, (m, body) in enumerate(zip(got, bodies), 1):
        check(m["body"] == body, f"offline message {i} has body {m['body']!r}, "
                                 f"expected {body!r} (order: {[g['body'] for g in got]})")
        check(str(m["from"]) in (alice_full, ctx.jid("alice")),
              f"offline message {i} from {m['from']}, expected {alice_full}")
        delay = m.xml.find(q(NS_DELAY, "delay"))
        check(delay is not None, f"offline message {i} has no <delay xmlns='{NS_DELAY}'/>")
        stamp = delay.get("stamp")
        check(stamp, f"offline message {i}: <delay/> without stamp")
        try:
            when = parse_stamp(stamp)
        except ValueError:
            raise Fail(f"offline message {i}: unparsable stamp {stamp!r}")
        check(when.tzinfo is not None, f"offline message {i}: stamp {stamp!r} has no zone")
        check(before <= when <= sent_by,
              f"offline message {i}: stamp {stamp} not between {before:%H:%M:%S} "
              f"and {sent_by:%H:%M:%S} UTC")
        if delay.get("from") is not None:
            check(delay.get("from") in (ctx.domain, ctx.jid("bob")),
                  f"offline message {i}: delay from={delay.get('from')!r}")

    ctx.step("no duplicates and no fourth message")
    extra = await bob.messages.quiet(lambda m: m["body"] != "", 1.0)
    check(not extra, f"unexpected extra message: {extra[0] if extra else ''}")
    await bob.stop()

    ctx.step("bob logs in again: the messages are not delivered twice")
    bob2 = await ctx.login("bob", resource="again")
    again = await bob2.messages.quiet(lambda m: m["body"] != "", 1.5)
    if again:
        raise Fail(f"offline messages delivered again on the next login: {again[0]}")
