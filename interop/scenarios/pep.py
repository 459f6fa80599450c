"""PEP (XEP-0163 over XEP-0060) driven by slixmpp's xep_0060/xep_0163/xep_0115 plugins, the
way a client uses them: bob advertises `tune+notify` in his entity capabilities (the server
must ask his disco#info and check the hash), alice publishes and bob gets the event, a
contact without the interest gets nothing; an OMEMO device list published with
access_model=open is readable by a stranger, a presence-only node is not; publish-options
that conflict with the node give precondition-not-met; a retraction is notified."""

import asyncio
import xml.etree.ElementTree as ET

from harness.client import Fail, StanzaErrorReply, check, push_item, q, short

USERS = ["alice", "bob", "carol"]
PLUGINS = ("xep_0030", "xep_0004", "xep_0115", "xep_0060", "xep_0163")
TUNE = "http://jabber.org/protocol/tune"
DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
EVENT = "http://jabber.org/protocol/pubsub#event"
PUBSUB = "http://jabber.org/protocol/pubsub"
ERRORS = "http://jabber.org/protocol/pubsub#errors"


def tune(title: str) -> ET.Element:
    return ET.fromstring(f"<tune xmlns='{TUNE}'><title>{title}</title></tune>")


def options(c, **fields) -> object:
    form = c.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    for var, value in fields.items():
        form.add_field(var=f"pubsub#{var}", value=value)
    return form


def event_items(msg, node: str):
    """The <items/> of a PEP event about `node` in a message, or None."""
    ev = msg.xml.find(q(EVENT, "event"))
    if ev is None:
        return None
    items = ev.find(q(EVENT, "items"))
    if items is None or items.get("node") != node:
        return None
    return items


async def both_ways(ctx, a, b):
    """Mutual presence subscription between two available clients."""
    a_bare, b_bare = str(a.boundjid.bare), str(b.boundjid.bare)
    for x, y, y_bare, x_bare in ((a, b, b_bare, a_bare), (b, a, a_bare, b_bare)):
        x.presence(to=y_bare, type="subscribe")
        await y.presences.take(lambda p: str(p["from"]) == x_bare
                               and p.xml.get("type") == "subscribe",
                               f"subscription request from {x_bare}")
        y.presence(to=x_bare, type="subscribed")
    for x, y_bare in ((a, b_bare), (b, a_bare)):
        await x.roster_pushes.take(
            lambda iq: (push_item(iq, y_bare) is not None
                        and push_item(iq, y_bare).get("subscription") == "both"),
            f"roster push 'both' for {y_bare}")


async def run(ctx):
    ctx.step("log in alice, bob/laptop (caps with tune+notify) and bob/tablet (caps without)")
    alice = await ctx.login("alice", resource="phone", roster=True, plugins=PLUGINS)
    bob = await ctx.login("bob", resource="laptop", roster=True, presence=False,
                          plugins=PLUGINS)
    bob.plugin["xep_0030"].add_feature(f"{TUNE}+notify")
    await bob.plugin["xep_0115"].update_caps(broadcast=False)
    bob.presence()
    bob2 = await ctx.login("bob", resource="tablet", roster=True, presence=False,
                           plugins=PLUGINS)
    await bob2.plugin["xep_0115"].update_caps(broadcast=False)
    bob2.presence()

    ctx.step("alice and bob subscribe to each other's presence")
    await both_ways(ctx, alice, bob)
    # Let the server finish its caps queries (slixmpp answers them on its own).
    await bob.plugin["xep_0030"].get_info(jid=ctx.domain)
    await bob2.plugin["xep_0030"].get_info(jid=ctx.domain)
    await asyncio.sleep(0.5)

    ctx.step("alice publishes a tune; bob/laptop gets the event")
    await alice.plugin["xep_0060"].publish(ctx.jid("alice"), TUNE, id="t1", payload=tune("Finzi"))
    msg = await bob.messages.take(lambda m: event_items(m, TUNE) is not None, "tune event")
    check(str(msg["from"]) == ctx.jid("alice"), f"event from {msg['from']}")
    items = event_items(msg, TUNE)
    item = items.find(q(EVENT, "item"))
    check(item is not None and item.get("id") == "t1"
          and item.findtext(f"{q(TUNE, 'tune')}/{q(TUNE, 'title')}") == "Finzi",
          f"event content: {short(msg.xml)}")

    ctx.step("bob/tablet, without +notify in its caps, gets no event")
    alice.message(str(bob2.boundjid), "marker", id="marker-1")
    await bob2.messages.take(lambda m: m["id"] == "marker-1", "marker")
    stray = await bob2.messages.quiet(lambda m: event_items(m, TUNE) is not None, 0.5)
    check(not stray, f"bob/tablet got an event: {[short(m.xml) for m in stray]}")

    ctx.step("alice publishes an OMEMO device list with access_model=open")
    devices = ET.fromstring(f"<list xmlns='{DEVICELIST}'><device id='31415'/></list>")
    await alice.plugin["xep_0060"].publish(ctx.jid("alice"), DEVICELIST, id="current",
                                           payload=devices,
                                           options=options(alice, access_model="open"))

    ctx.step("carol, a stranger, reads it")
    carol = await ctx.login("carol", plugins=PLUGINS)
    res = await carol.plugin["xep_0060"].get_items(ctx.jid("alice"), DEVICELIST)
    xml = ET.tostring(res.xml, encoding="unicode")
    check("31415" in xml, f"device list as read by a stranger: {short(res.xml)}")

    ctx.step("carol is refused the presence-only tune node")
    try:
        res = await carol.plugin["xep_0060"].get_items(ctx.jid("alice"), TUNE)
        raise Fail(f"carol read alice's tune: {short(res.xml)}")
    except Exception as e:  # slixmpp raises IqError
        iq = getattr(e, "iq", None)
        check(iq is not None, f"unexpected failure: {e!r}")
        cond = iq["error"]["condition"]
        check(cond in ("not-authorized", "forbidden"), f"condition {cond}")
        ctx.log.info("stranger refused with %s", cond)

    ctx.step("bob, a contact, reads the tune node")
    res = await bob.plugin["xep_0060"].get_items(ctx.jid("alice"), TUNE)
    check("Finzi" in ET.tostring(res.xml, encoding="unicode"), f"bob's read: {short(res.xml)}")

    ctx.step("publish-options that conflict with the node: precondition-not-met")
    try:
        await alice.plugin["xep_0060"].publish(ctx.jid("alice"), DEVICELIST, id="current",
                                               payload=devices,
                                               options=options(alice, access_model="whitelist"))
        raise Fail("a conflicting publish-options was accepted")
    except Exception as e:
        iq = getattr(e, "iq", None)
        check(iq is not None, f"unexpected failure: {e!r}")
        err = iq.xml.find(q("jabber:client", "error"))
        check(err is not None and err.find(q(ERRORS, "precondition-not-met")) is not None,
              f"error: {short(iq.xml)}")
        check(iq["error"]["condition"] == "conflict", f"condition {iq['error']['condition']}")

    ctx.step("alice retracts the tune with notify; bob hears of it")
    await alice.plugin["xep_0060"].retract(ctx.jid("alice"), TUNE, "t1", notify=True)

    def is_retract(m):
        items = event_items(m, TUNE)
        return items is not None and items.find(q(EVENT, "retract")) is not None

    msg = await bob.messages.take(is_retract, "retract event")
    check(msg.xml.find(f".//{q(EVENT, 'retract')}").get("id") == "t1", short(msg.xml))
