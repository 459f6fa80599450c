"""Server-side XEP-0199 (ping), XEP-0092 (software version) and XEP-0202 (entity time),
and a stanza error for an IQ nobody handles (RFC 6120 8.4: service-unavailable)."""

import datetime as dt
import re

from harness.client import check, q, short

USERS = ["alice"]


async def run(ctx):
    c = await ctx.login("alice", presence=False)
    server = ctx.domain

    ctx.step("XEP-0199: ping the server")
    res = await c.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=server)
    check(res.get("type") == "result", f"ping: {short(res)}")
    check(len(res) == 0, f"ping result has a payload: {short(res)}")

    ctx.step("XEP-0199: ping without 'to' (the server answers for the stream)")
    await c.iq("get", "<ping xmlns='urn:xmpp:ping'/>")

    ctx.step("XEP-0092: software version of the server")
    res = await c.iq("get", "<query xmlns='jabber:iq:version'/>", to=server)
    query = res.find(q("jabber:iq:version", "query"))
    check(query is not None, f"version result without <query/>: {short(res)}")
    name = query.findtext(q("jabber:iq:version", "name"))
    version = query.findtext(q("jabber:iq:version", "version"))
    check(name and name.strip(), f"version result without <name/>: {short(res)}")
    check(version and version.strip(), f"version result without <version/>: {short(res)}")
    ctx.log.info("server says it is %s %s", name, version)

    ctx.step("XEP-0202: entity time of the server")
    res = await c.iq("get", "<time xmlns='urn:xmpp:time'/>", to=server)
    t = res.find(q("urn:xmpp:time", "time"))
    check(t is not None, f"time result without <time/>: {short(res)}")
    tzo = t.findtext(q("urn:xmpp:time", "tzo"))
    utc = t.findtext(q("urn:xmpp:time", "utc"))
    check(tzo and re.fullmatch(r"(Z|[+-]\d\d:\d\d)", tzo.strip()), f"bad <tzo/>: {tzo!r}")
    check(utc and utc.strip().endswith("Z"), f"<utc/> must be UTC with 'Z': {utc!r}")
    try:
        when = dt.datetime.fromisoformat(utc.strip().replace("Z", "+00:00"))
    except ValueError:
        when = None
    check(when is not None, f"unparsable <utc/>: {utc!r}")
    skew = abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds())
    check(skew < 120, f"server time {utc} is {skew:.0f}s away from ours")

    ctx.step("an IQ get in an unknown namespace gets service-unavailable")
    err = await c.iq_error("get", "<query xmlns='urn:example:interop:nobody-handles-this'/>",
                           to=server)
    check(err.condition == "service-unavailable",
          f"unknown IQ answered with <{err.condition}/>, expected service-unavailable")
