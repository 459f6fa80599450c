"""HTTP File Upload (XEP-0363) with aioxmpp: the slot is requested with aioxmpp's own
`aioxmpp.httpupload.request_slot` (its Request/Slot XSOs; it leaves the HTTP part to the
application); <file-too-large/>, which aioxmpp does not know, is declared here as an
application error condition (an aioxmpp XSO), so the error is parsed. The service is found
with aioxmpp's DiscoClient (disco#items on the domain, the item with identity store/file and
the feature, its max-file-size from the XEP-0128 form); alice asks for a slot for a
100,000-byte file, PUTs it over HTTPS with the slot's headers, bob GETs it back and the bytes
and Content-Type match; a request one byte over max-file-size is refused with
`not-acceptable` + <file-too-large/> (its <max-file-size/>, when given, is the advertised
limit).

HTTP goes through Python's http.client over TLS that trusts only the target's certificate
(the one aiox/lib.py trusts for XMPP); the host name is not checked, since the connection goes
to the target's loopback address whatever host the URL names (sent as the Host header)."""

import asyncio
import http.client
import os
import ssl
import urllib.parse

import aioxmpp
import aioxmpp.disco
import aioxmpp.errors
import aioxmpp.httpupload
import aioxmpp.xso as xso

from aiox.lib import Fail, ca_file, check, short

USERS = ["alice", "bob"]
NS = "urn:xmpp:http:upload:0"
BODY = os.urandom(100_000)
CONTENT_TYPE = "image/png"


@aioxmpp.stanza.Error.as_application_condition
class FileTooLarge(xso.XSO):
    TAG = (NS, "file-too-large")
    max_file_size = xso.ChildText((NS, "max-file-size"), type_=xso.Integer(), default=None)


def http_request(ctx, method: str, url: str, body: bytes | None = None, headers=None):
    u = urllib.parse.urlsplit(url)
    check(u.scheme == "https", f"slot URL is not https: {url}")
    tls = ssl.create_default_context(cafile=ca_file(ctx.target))
    tls.check_hostname = False  # the URL names the domain; the connection goes to an IP
    conn = http.client.HTTPSConnection(ctx.target.host, u.port or 443, timeout=20, context=tls)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        conn.request(method, path, body=body, headers={"Host": u.netloc, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


async def find_service(disco, domain):
    items = await disco.query_items(aioxmpp.JID.fromstr(domain), require_fresh=True)
    for it in items.items:
        info = await disco.query_info(it.jid, require_fresh=True)
        ids = {(i.category, i.type_) for i in info.identities}
        if ("store", "file") in ids and NS in info.features:
            for form in info.exts:
                if form.get_form_type() != NS:
                    continue
                for field in form.fields:
                    if field.var == "max-file-size" and field.values:
                        return it.jid, int(field.values[0])
            return it.jid, None
    raise Fail(f"no upload service among the domain's items: {[str(i.jid) for i in items.items]}")


async def run(ctx):
    alice = await ctx.login("alice", "phone", services=[aioxmpp.DiscoClient])
    bob = await ctx.login("bob", "desk")

    ctx.step("alice finds the upload service and its size limit with aioxmpp's DiscoClient")
    service, max_size = await find_service(alice.summon(aioxmpp.DiscoClient), ctx.domain)
    check(max_size is not None and max_size >= len(BODY), f"max-file-size {max_size}")

    ctx.step("alice requests a slot")
    slot = await asyncio.wait_for(aioxmpp.httpupload.request_slot(
        alice.client, service, "holiday photo.png", len(BODY), CONTENT_TYPE), 10)
    check(isinstance(slot, aioxmpp.httpupload.xso.Slot), f"not a slot: {short(slot)}")
    # aioxmpp keeps only the headers XEP-0363 allows (Authorization, Cookie, Expires).
    headers = dict(slot.put.headers.items())

    ctx.step("alice PUTs the file")
    status, _, resp = await asyncio.to_thread(
        http_request, ctx, "PUT", slot.put.url, BODY,
        {"Content-Type": CONTENT_TYPE, "Content-Length": str(len(BODY)), **headers})
    check(status in (200, 201), f"PUT answered {status}: {resp[:200]!r}")

    ctx.step("bob GETs it back: same bytes and Content-Type")
    status, hdrs, got = await asyncio.to_thread(http_request, ctx, "GET", slot.get.url)
    check(status == 200, f"GET answered {status}")
    check(got == BODY, f"downloaded {len(got)} bytes that differ from the {len(BODY)} uploaded")
    check(hdrs.get("content-type", "").startswith(CONTENT_TYPE),
          f"Content-Type {hdrs.get('content-type')!r}")

    ctx.step("a request one byte over the limit is refused with <file-too-large/>")
    try:
        res = await asyncio.wait_for(aioxmpp.httpupload.request_slot(
            bob.client, service, "huge.bin", max_size + 1, "application/octet-stream"), 10)
        raise Fail(f"an oversize slot was granted: {short(res)}")
    except aioxmpp.errors.XMPPError as e:
        check(e.condition == aioxmpp.ErrorCondition.NOT_ACCEPTABLE,
              f"oversize refused with {e.condition}")
        app = e.application_defined_condition
        check(isinstance(app, FileTooLarge), f"no <file-too-large/>: {app!r}")
        check(app.max_file_size in (None, max_size),
              f"<max-file-size/> {app.max_file_size} but {max_size} advertised")
