"""vcard-temp (XEP-0054): publish, read back (own and from another account), replace,
refuse writes to someone else's vCard, and an unset vCard reads as empty or item-not-found."""

import base64

from harness.client import Fail, StanzaErrorReply, check, q, short

USERS = ["alice", "bob"]
NS = "vcard-temp"
PHOTO = base64.b64encode(bytes(range(256)) * 3).decode()


def vcard_xml(fn: str, nick: str | None) -> str:
    nick_el = f"<NICKNAME>{nick}</NICKNAME>" if nick else ""
    return (f"<vCard xmlns='{NS}'><FN>{fn}</FN>{nick_el}"
            f"<EMAIL><INTERNET/><USERID>alice@example.org</USERID></EMAIL>"
            f"<DESC>a &amp; b &lt;c&gt; ✓</DESC>"
            f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{PHOTO}</BINVAL></PHOTO></vCard>")


def fields(res) -> dict:
    card = res.find(q(NS, "vCard"))
    check(card is not None, f"vCard result without <vCard xmlns='{NS}'/>: {short(res)}")

    def text(path):
        el = card.find(path)
        return None if el is None else (el.text or "")
    return {
        "FN": text(q(NS, "FN")),
        "NICKNAME": text(q(NS, "NICKNAME")),
        "USERID": text(f"{q(NS, 'EMAIL')}/{q(NS, 'USERID')}"),
        "DESC": text(q(NS, "DESC")),
        "BINVAL": "".join((text(f"{q(NS, 'PHOTO')}/{q(NS, 'BINVAL')}") or "").split()),
    }


def expect(got: dict, fn: str, nick: str | None, who: str) -> None:
    want = {"FN": fn, "NICKNAME": nick, "USERID": "alice@example.org",
            "DESC": "a & b <c> ✓", "BINVAL": PHOTO}
    for k, v in want.items():
        if got[k] != v:
            shown = got[k] if k != "BINVAL" else f"{len(got[k] or '')} chars"
            raise Fail(f"{who}: vCard {k} is {shown!r}, expected "
                       f"{v if k != 'BINVAL' else f'{len(v)} chars'!r}")


async def run(ctx):
    alice_bare = ctx.jid("alice")
    alice = await ctx.login("alice", presence=False)
    bob = await ctx.login("bob", presence=False)

    ctx.step("bob reads his own vCard before setting one: empty or item-not-found")
    try:
        res = await bob.iq("get", f"<vCard xmlns='{NS}'/>")
        card = res.find(q(NS, "vCard"))
        check(card is None or len(card) == 0, f"unset vCard is not empty: {short(res)}")
    except StanzaErrorReply as e:
        check(e.condition == "item-not-found", f"unset vCard: error {e.condition}")

    ctx.step("alice publishes her vCard")
    await alice.iq("set", vcard_xml("Alice Liddell", "al"))

    ctx.step("alice reads her own vCard")
    expect(fields(await alice.iq("get", f"<vCard xmlns='{NS}'/>")), "Alice Liddell", "al",
           "own read")

    ctx.step("bob reads alice's vCard")
    expect(fields(await bob.iq("get", f"<vCard xmlns='{NS}'/>", to=alice_bare)),
           "Alice Liddell", "al", "bob's read")

    ctx.step("alice replaces her vCard (no NICKNAME now)")
    await alice.iq("set", vcard_xml("Alice Pleasance Liddell", None))
    expect(fields(await bob.iq("get", f"<vCard xmlns='{NS}'/>", to=alice_bare)),
           "Alice Pleasance Liddell", None, "read after replacement")

    ctx.step("bob tries to overwrite alice's vCard: an error")
    err = await bob.iq_error("set", f"<vCard xmlns='{NS}'><FN>Mallory</FN></vCard>",
                             to=alice_bare)
    ctx.log.info("foreign vCard set refused with %s", err.condition)
    expect(fields(await alice.iq("get", f"<vCard xmlns='{NS}'/>")),
           "Alice Pleasance Liddell", None, "read after bob's attempt")
