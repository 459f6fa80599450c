"""Message Archive Management (XEP-0313) with slixmpp's xep_0313 and RSM (XEP-0059): bob
sends alice 25 messages and carol 3; alice's client pages through her archive 10 at a time
(forwards and backwards) and filters by `with`; the ids in the archive are the
<stanza-id by='alice@…'/> (XEP-0359) her client saw on the live messages."""

from harness.client import check, short

USERS = ["alice", "bob", "carol"]
TIMEOUT = 90
SID = "urn:xmpp:sid:0"
MAM = "urn:xmpp:mam:2"
CLIENT = "jabber:client"


def forwarded_body(result_msg) -> str | None:
    return result_msg["mam_result"]["forwarded"]["stanza"]["body"]


async def run(ctx):
    alice_bare = ctx.jid("alice")
    ctx.step("log in alice (with xep_0313), bob and carol")
    alice = await ctx.login("alice", resource="phone", plugins=("xep_0059", "xep_0313"))
    bob = await ctx.login("bob")
    carol = await ctx.login("carol")

    ctx.step("bob sends 25 messages, carol 3; alice gets each with a stanza-id by her account")
    live_ids = []
    for i in range(25):
        bob.message(alice_bare, f"bob {i}", id=f"b{i}")
        m = await alice.messages.take(lambda m, i=i: m["id"] == f"b{i}", f"message b{i}")
        sid = [e for e in m.xml.findall(f"{{{SID}}}stanza-id") if e.get("by") == alice_bare]
        check(len(sid) == 1 and sid[0].get("id"), f"no stanza-id by {alice_bare}: {short(m.xml)}")
        live_ids.append(sid[0].get("id"))
    for i in range(3):
        carol.message(alice_bare, f"carol {i}", id=f"c{i}")
        await alice.messages.take(lambda m, i=i: m["id"] == f"c{i}", f"message c{i}")

    ctx.step("alice iterates her archive 10 at a time: 28 messages in order")
    results = [m async for m in alice.plugin["xep_0313"].iterate(rsm={"max": 10})]
    bodies = [forwarded_body(m) for m in results]
    want = [f"bob {i}" for i in range(25)] + [f"carol {i}" for i in range(3)]
    check(bodies == want, f"archive bodies: {bodies}")
    ids = [m["mam_result"]["id"] for m in results]
    check(ids[:25] == live_ids, f"archive ids {ids[:25]} differ from stanza-ids {live_ids}")
    check(len(set(ids)) == len(ids), "duplicate archive ids")

    ctx.step("backwards from the end, 10 at a time")
    rev = [m async for m in alice.plugin["xep_0313"].iterate(rsm={"max": 10}, reverse=True)]
    check([forwarded_body(m) for m in rev] == list(reversed(want)),
          f"reverse: {[forwarded_body(m) for m in rev]}")

    ctx.step("with=carol: her 3 messages only")
    cw = [m async for m in alice.plugin["xep_0313"].iterate(with_jid=ctx.jid("carol"),
                                                              rsm={"max": 10})]
    check([forwarded_body(m) for m in cw] == [f"carol {i}" for i in range(3)],
          f"with carol: {[forwarded_body(m) for m in cw]}")

    ctx.step("bob's own archive holds what he sent")
    bob2 = await ctx.login("bob", resource="archive", plugins=("xep_0059", "xep_0313"))
    sent = [m async for m in bob2.plugin["xep_0313"].iterate(with_jid=alice_bare,
                                                              rsm={"max": 10})]
    check([forwarded_body(m) for m in sent] == [f"bob {i}" for i in range(25)],
          f"bob's archive: {[forwarded_body(m) for m in sent]}")
