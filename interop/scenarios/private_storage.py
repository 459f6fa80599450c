"""Private XML storage (XEP-0049): store, read back, replace, keep namespaces apart, read an
unset namespace as an empty element, and keep other accounts out."""

from harness.client import Fail, StanzaErrorReply, check, q, short

USERS = ["alice", "bob"]
NS = "jabber:iq:private"
A = "urn:example:interop:prefs"
B = "urn:example:interop:other"


def wrap(inner: str) -> str:
    return f"<query xmlns='{NS}'>{inner}</query>"


async def read(c, ns: str, tag: str = "prefs"):
    res = await c.iq("get", wrap(f"<{tag} xmlns='{ns}'/>"))
    query = res.find(q(NS, "query"))
    check(query is not None, f"private get without <query/>: {short(res)}")
    el = query.find(q(ns, tag))
    check(el is not None, f"private get for {ns} without <{tag}/>: {short(res)}")
    return el


async def run(ctx):
    alice = await ctx.login("alice", presence=False)
    bob = await ctx.login("bob", presence=False)

    ctx.step("read a namespace never stored: an empty element")
    el = await read(alice, A)
    check(len(el) == 0 and not (el.text or "").strip(), f"unset data is not empty: {short(el)}")

    ctx.step("store data and read it back")
    await alice.iq("set", wrap(f"<prefs xmlns='{A}'><colour shade='dark'>blue</colour>"
                               f"<note>a &amp; b ✓</note></prefs>"))
    el = await read(alice, A)
    colour = el.find(q(A, "colour"))
    check(colour is not None and colour.text == "blue" and colour.get("shade") == "dark",
          f"stored data came back as {short(el)}")
    check(el.findtext(q(A, "note")) == "a & b ✓", f"text came back as {short(el)}")

    ctx.step("store another namespace; the first is unchanged")
    await alice.iq("set", wrap(f"<prefs xmlns='{B}'><x>1</x></prefs>"))
    el = await read(alice, A)
    check(el.findtext(q(A, "colour")) == "blue", f"storing namespace B changed A: {short(el)}")
    check((await read(alice, B)).findtext(q(B, "x")) == "1", "namespace B not stored")

    ctx.step("replace the first namespace's data")
    await alice.iq("set", wrap(f"<prefs xmlns='{A}'><colour>green</colour></prefs>"))
    el = await read(alice, A)
    check(el.findtext(q(A, "colour")) == "green" and el.find(q(A, "note")) is None,
          f"after replacement: {short(el)}")

    ctx.step("bob reads his own: empty (private per account)")
    el = await read(bob, A)
    check(len(el) == 0, f"bob sees data he never stored: {short(el)}")

    ctx.step("bob asks alice's storage directly: an error")
    try:
        res = await bob.iq("get", wrap(f"<prefs xmlns='{A}'/>"), to=ctx.jid("alice"))
        raise Fail(f"bob got a result for alice's private data: {short(res)}")
    except StanzaErrorReply as e:
        ctx.log.info("foreign private get refused with %s", e.condition)

