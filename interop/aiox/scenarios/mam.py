"""Message Archive Management (XEP-0313 urn:xmpp:mam:2, paging with XEP-0059) with aioxmpp.
aioxmpp 0.13 has no MAM service, so the query, <result/> and <fin/> are XSOs declared here
and sent through aioxmpp's stanza layer (its RSM and data-form XSOs are used as they are),
the way a client syncs its history: 15 live messages from bob carry one stanza-id by alice's
bare JID; alice pages through her archive 6 at a time forwards (6, 6, 3, `complete` on the
last page) and backwards from the last page; every page holds the right messages in order,
archive ids equal the live stanza ids, the RSM first/last name the page's ends, and the
`with` filter works; bob's own archive holds what he sent."""

import aioxmpp
import aioxmpp.forms
import aioxmpp.misc
import aioxmpp.rsm.xso
import aioxmpp.xso as xso

from aiox.lib import Fail, body, check, short

USERS = ["alice", "bob", "carol"]
TIMEOUT = 90
NS = "urn:xmpp:mam:2"
N = 15


@aioxmpp.IQ.as_payload_class
class Query(xso.XSO):
    TAG = (NS, "query")
    queryid = xso.Attr("queryid", default=None)
    form = xso.Child([aioxmpp.forms.Data])
    rsm = xso.Child([aioxmpp.rsm.xso.ResultSetMetadata])


@aioxmpp.IQ.as_payload_class
class Fin(xso.XSO):
    TAG = (NS, "fin")
    complete = xso.Attr("complete", type_=xso.Bool(), default=False)
    rsm = xso.Child([aioxmpp.rsm.xso.ResultSetMetadata])


class Result(xso.XSO):
    TAG = (NS, "result")
    queryid = xso.Attr("queryid", default=None)
    id_ = xso.Attr("id", default=None)
    forwarded = xso.Child([aioxmpp.misc.Forwarded])


aioxmpp.Message.xep0313_result = xso.Child([Result])


def form(with_jid):
    f = aioxmpp.forms.Data(aioxmpp.forms.DataType.SUBMIT)
    f.fields.append(aioxmpp.forms.Field(type_=aioxmpp.forms.FieldType.HIDDEN,
                                        var="FORM_TYPE", values=[NS]))
    f.fields.append(aioxmpp.forms.Field(var="with", values=[str(with_jid)]))
    return f


async def page(c, qid, with_jid, rsm):
    """One MAM query; returns (results [(archive id, forwarded message)], fin)."""
    q = Query()
    q.queryid = qid
    q.form = form(with_jid)
    q.rsm = rsm
    fin = await c.send(aioxmpp.IQ(type_=aioxmpp.IQType.SET, payload=q), timeout=15)
    check(isinstance(fin, Fin), f"MAM query answered without <fin/>: {fin!r}")
    got = await c.messages.quiet(lambda m: m.xep0313_result is not None
                                 and m.xep0313_result.queryid == qid, 0.3)
    for m in got:
        check(m.from_ is None or m.from_ == c.jid.bare(),
              f"MAM result not from the own account: {short(m)}")
    out = []
    for m in got:
        r = m.xep0313_result
        check(r.forwarded is not None and r.forwarded.stanza is not None,
              f"<result/> without a forwarded message: {short(m)}")
        out.append((r.id_, r.forwarded.stanza))
    return out, fin


async def run(ctx):
    alice_bare = aioxmpp.JID.fromstr(ctx.jid("alice"))
    bob_bare = aioxmpp.JID.fromstr(ctx.jid("bob"))
    ctx.step("alice, bob and carol online")
    alice = await ctx.login("alice", "phone")
    bob = await ctx.login("bob", "pc")
    carol = await ctx.login("carol", "pc")
    for c in (alice, bob, carol):
        await c.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE))

    ctx.step(f"bob sends {N} messages, carol one; each arrives live with one stanza-id by alice")
    sent = [f"history {i:02d} <&>" for i in range(N)]
    live_ids = []
    for i, text in enumerate(sent):
        await bob.send(bob.message(alice_bare, text, id=f"mam-{i}"))
        if i == 7:
            await carol.send(carol.message(alice_bare, "not from bob", id="mam-carol"))
    for i, text in enumerate(sent):
        m = await alice.messages.take(lambda m: m.id_ == f"mam-{i}", f"live message {i}")
        check(body(m) == text, f"live body {i}: {short(m)}")
        ids = [s for s in m.xep0359_stanza_ids if s.by == alice_bare]
        check(len(ids) == 1 and ids[0].id_, f"live message {i}: stanza-ids by {alice_bare}: "
              f"{short(m)}")
        live_ids.append(ids[0].id_)
    check(len(set(live_ids)) == N, f"stanza ids not unique: {live_ids}")
    await alice.messages.take(lambda m: m.id_ == "mam-carol", "carol's message")

    ctx.step("page forwards 6 at a time with <with/> bob")
    pages = []
    rsm = aioxmpp.rsm.xso.ResultSetMetadata()
    rsm.max_ = 6
    for n in range(5):
        items, fin = await page(alice, f"fwd-{n}", bob_bare, rsm)
        pages.append(items)
        if items:
            check(fin.rsm is not None and fin.rsm.first is not None and fin.rsm.last is not None,
                  f"page {n}: <fin/> without RSM first/last")
            check(fin.rsm.first.value == items[0][0] and fin.rsm.last.value == items[-1][0],
                  f"page {n}: RSM first/last {fin.rsm.first.value}/{fin.rsm.last.value} "
                  f"do not name the page's ends {items[0][0]}/{items[-1][0]}")
        if fin.complete:
            break
        check(items, f"page {n} is empty but not complete")
        rsm = fin.rsm.next_page(6)
    else:
        raise Fail("no page with complete='true' after 5 pages")
    sizes = [len(p) for p in pages]
    check(sizes == [6, 6, 3], f"forward page sizes {sizes}, expected [6, 6, 3]")
    flat = [x for p in pages for x in p]
    check([body(m) for _, m in flat] == sent, f"archived bodies {[body(m) for _, m in flat]}")
    check([i for i, _ in flat] == live_ids, f"archive ids {[i for i, _ in flat]} "
          f"!= live stanza ids {live_ids}")
    check(all(m.from_ is not None and m.from_.bare() == bob_bare for _, m in flat),
          "an archived message not from bob")

    ctx.step("page backwards from the last page")
    items, fin = await page(alice, "back-0", bob_bare, aioxmpp.rsm.xso.ResultSetMetadata.last_page(6))
    check([i for i, _ in items] == live_ids[-6:], f"last page {[i for i, _ in items]}, "
          f"expected {live_ids[-6:]}")
    items2, fin2 = await page(alice, "back-1", bob_bare, fin.rsm.previous_page(6))
    check([i for i, _ in items2] == live_ids[-12:-6], f"page before the last: "
          f"{[i for i, _ in items2]}, expected {live_ids[-12:-6]}")

    ctx.step("bob's archive holds what he sent to alice")
    rsm = aioxmpp.rsm.xso.ResultSetMetadata()
    rsm.max_ = 50
    items, fin = await page(bob, "bob-0", alice_bare, rsm)
    check(fin.complete, "bob's archive with 15 messages and max 50 not complete")
    check([body(m) for _, m in items] == sent, f"bob's archive: {[body(m) for _, m in items]}")
