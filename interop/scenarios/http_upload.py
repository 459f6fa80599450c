"""HTTP File Upload (XEP-0363): find the service the way clients do (disco#items on the
domain, then the item whose disco#info has identity store/file and the upload feature, and
its max-file-size form), request a slot, PUT the file over HTTPS, GET it back as another
account, and see an oversize request refused with <file-too-large/>.

The HTTP side uses Python's http.client (slixmpp's xep_0363 needs aiohttp, which the pinned
venv does not carry); the connection goes to the target's loopback address whatever host
name the URL carries, with the URL's Host header."""

import asyncio
import http.client
import urllib.parse

from harness.client import Fail, StanzaErrorReply, check, q, short

USERS = ["alice", "bob"]
NS = "urn:xmpp:http:upload:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
DATA = "jabber:x:data"
BODY = bytes(range(256)) * 300  # 76,800 bytes


def http_request(ctx, method: str, url: str, body: bytes | None = None, headers=None):
    u = urllib.parse.urlsplit(url)
    port = u.port or 443
    tls = ctx.target.ssl_context()
    tls.check_hostname = False  # the URL names the domain; the connection goes to an IP
    conn = http.client.HTTPSConnection(ctx.target.host, port, timeout=20, context=tls)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        hdrs = {"Host": u.netloc, **(headers or {})}
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


async def find_service(client, domain):
    items = await client.iq("get", f"<query xmlns='{DISCO_ITEMS}'/>", to=domain)
    for item in items.iter(q(DISCO_ITEMS, "item")):
        jid = item.get("jid")
        info = await client.iq("get", f"<query xmlns='{DISCO_INFO}'/>", to=jid)
        query = info.find(q(DISCO_INFO, "query"))
        ids = [(i.get("category"), i.get("type")) for i in query.iter(q(DISCO_INFO, "identity"))]
        feats = [f.get("var") for f in query.iter(q(DISCO_INFO, "feature"))]
        if ("store", "file") in ids and NS in feats:
            max_size = None
            for form in query.iter(q(DATA, "x")):
                values = {f.get("var"): f.findtext(q(DATA, "value")) for f in form.iter(q(DATA, "field"))}
                if values.get("FORM_TYPE") == NS and values.get("max-file-size"):
                    max_size = int(values["max-file-size"])
            return jid, max_size
    raise Fail(f"no upload service among the domain's items: {short(items)}")


async def run(ctx):
    alice = await ctx.login("alice", presence=False)
    bob = await ctx.login("bob", presence=False)

    ctx.step("alice finds the upload service and its size limit")
    service, max_size = await find_service(alice, ctx.domain)
    check(max_size and max_size >= len(BODY), f"max-file-size {max_size}")

    ctx.step("alice requests a slot")
    res = await alice.iq(
        "get",
        f"<request xmlns='{NS}' filename='report 1.pdf' size='{len(BODY)}' content-type='application/pdf'/>",
        to=service)
    slot = res.find(q(NS, "slot"))
    check(slot is not None, f"no slot: {short(res)}")
    put = slot.find(q(NS, "put")).get("url")
    get = slot.find(q(NS, "get")).get("url")
    headers = {h.get("name"): (h.text or "") for h in slot.find(q(NS, "put")).iter(q(NS, "header"))}

    ctx.step("alice PUTs the file")
    status, _, body = await asyncio.to_thread(
        http_request, ctx, "PUT", put, BODY, {"Content-Type": "application/pdf", **headers})
    check(status in (200, 201), f"PUT answered {status}: {body[:200]!r}")

    ctx.step("bob GETs it back")
    status, hdrs, body = await asyncio.to_thread(http_request, ctx, "GET", get)
    check(status == 200, f"GET answered {status}")
    check(body == BODY, f"downloaded {len(body)} bytes that differ from the {len(BODY)} uploaded")
    check(hdrs.get("content-type", "").startswith("application/pdf"),
          f"Content-Type {hdrs.get('content-type')!r}")

    ctx.step("a request above the limit is refused with <file-too-large/>")
    try:
        await bob.iq("get", f"<request xmlns='{NS}' filename='huge.bin' size='{max_size + 1}'/>",
                     to=service)
        raise Fail("an oversize slot was granted")
    except StanzaErrorReply as e:
        check(e.condition == "not-acceptable", f"oversize refused with {e.condition}")
        err = e.xml.find(q("jabber:client", "error"))
        check(err is not None and err.find(q(NS, "file-too-large")) is not None,
              f"no <file-too-large/>: {short(e.xml)}")
