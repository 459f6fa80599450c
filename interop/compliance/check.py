#!/usr/bin/env python3
"""A compliance checker in the spirit of the Conversations Compliance Tester.

It signs in to a running server with slixmpp and runs the same kinds of checks the public
tester runs (written here from its published list of checks, not copied): the namespaces it
looks for in stream features, in the server's and the account's disco#info, the services it
looks for in disco#items, and a Direct TLS connection to the SRV target (XEP-0368). It prints
one line per check and a score.

Checks are grouped as the tester groups them. A check marked with an issue number needs a
component that issue builds (group chat, upload, proxy65, TURN); the score is printed both
over every check and over the checks that need no such component.

Usage:
  check.py --jid user@domain --password PW --host 127.0.0.1 --port 5222
           [--direct-tls-port 5223] [--insecure] [--json]

Exit status: 0 when every check not needing a component passed, 1 otherwise.
"""

import argparse
import asyncio
import json
import socket
import ssl
import sys

import slixmpp
from slixmpp.xmlstream import ET

NS_CAPS = "http://jabber.org/protocol/caps"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"

# (name, how, target, namespaces or callable, suite, needs)
#   how: "stream" (a stream feature), "disco" (any of the features on target),
#        "identity" (an identity on target), "service" (a disco#items entry with the feature),
#        "form" (a field in the disco#info extension forms of target), "custom".
#   target: "server" or "account".
CHECKS = [
    ("XEP-0115: Entity Capabilities", "stream", None, ["{%s}c" % NS_CAPS], "Conversations", None),
    ("XEP-0163: Personal Eventing Protocol", "identity", "account", ("pubsub", "pep"), "Conversations", None),
    ("XEP-0237: Roster Versioning", "stream", None, ["{urn:xmpp:features:rosterver}ver"], "Conversations", None),
    ("XEP-0280: Message Carbons", "disco", "server", ["urn:xmpp:carbons:2"], "Conversations", None),
    ("XEP-0191: Blocking Command", "disco", "server", ["urn:xmpp:blocking"], "Conversations", None),
    ("XEP-0045: Multi-User Chat", "service", None, ["http://jabber.org/protocol/muc"], "Conversations", None),
    ("XEP-0198: Stream Management", "stream", None, ["{urn:xmpp:sm:3}sm"], "Conversations", None),
    ("XEP-0313: Message Archive Management", "disco", "server|account",
     ["urn:xmpp:mam:0", "urn:xmpp:mam:1", "urn:xmpp:mam:2"], "Conversations", None),
    ("XEP-0352: Client State Indication", "stream", None, ["{urn:xmpp:csi:0}csi"], "Conversations", None),
    ("XEP-0363: HTTP File Upload", "service", None, ["urn:xmpp:http:upload:0", "urn:xmpp:http:upload"], "Conversations", None),
    ("XEP-0065: SOCKS5 Bytestreams (Proxy)", "service", None, ["http://jabber.org/protocol/bytestreams"], "Conversations", None),
    ("XEP-0357: Push Notifications", "disco", "account", ["urn:xmpp:push:0"], "Conversations", None),
    # The tester's wider suite.
    ("XEP-0384: OMEMO Encryption", "custom", "omemo", None, "Everything", None),
    ("XEP-0160: Offline Messages", "disco", "server", ["msgoffline"], "Everything", None),
    ("XEP-0157: Contact Addresses (abuse)", "form", "server", "abuse-addresses", "Everything", None),
    ("XEP-0368: XMPP over TLS (Direct TLS port)", "custom", "direct_tls", None, "Everything", None),
    ("XEP-0398: Avatar Conversion", "disco", "server|account", ["urn:xmpp:pep-vcard-conversion:0"], "Everything", None),
    ("XEP-0411: Bookmarks Conversion", "disco", "server|account", ["urn:xmpp:bookmarks-conversion:0"], "Everything", None),
    ("XEP-0215: External Service Discovery", "disco", "server", ["urn:xmpp:extdisco:2", "urn:xmpp:extdisco:1"], "Everything", None),
    ("XEP-0313: MAM for group chat", "custom", "mam_muc", None, "Everything", None),
]


class Checker(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.stream_features = set()
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("failed_auth", self._failed)
        self.register_plugin("xep_0030")

    async def _handle_stream_features(self, features):
        for child in features.xml:
            self.stream_features.add(child.tag)
        return await super()._handle_stream_features(features)

    async def _start(self, _event):
        if not self.ready.done():
            self.ready.set_result(True)

    def _failed(self, _event):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("authentication failed"))


async def disco_info(xmpp, jid):
    iq = await xmpp.plugin["xep_0030"].get_info(jid=jid, timeout=10)
    q = iq["disco_info"]
    return set(q["features"]), {(c, t) for (c, t, _l, _n) in q["identities"]}, iq.xml


async def disco_items(xmpp, jid):
    iq = await xmpp.plugin["xep_0030"].get_items(jid=jid, timeout=10)
    return [item[0] for item in iq["disco_items"]["items"]]


def form_has_field(info_xml, var):
    for form in info_xml.iter("{jabber:x:data}x"):
        for field in form.iter("{jabber:x:data}field"):
            if field.get("var") == var and any(
                (v.text or "").strip() for v in field.iter("{jabber:x:data}value")
            ):
                return True
    return False


def direct_tls_ok(host, port, domain, insecure):
    """Connect to the Direct TLS port, offer ALPN xmpp-client and SNI, read a stream header."""
    ctx = ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["xmpp-client"])
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=domain) as tls:
                tls.sendall(
                    (
                        "<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
                        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                        % domain
                    ).encode()
                )
                tls.settimeout(5)
                data = tls.recv(4096)
                return b"stream:stream" in data
    except (OSError, ssl.SSLError):
        return False


async def run(args):
    xmpp = Checker(args.jid, args.password)
    if args.insecure:
        xmpp.ssl_context.check_hostname = False
        xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    xmpp.connect(host=args.host, port=args.port)
    await asyncio.wait_for(xmpp.ready, 20)
    account = xmpp.boundjid.bare
    server = xmpp.boundjid.domain
    cache = {}

    async def info(target):
        jid = account if target == "account" else server
        if jid not in cache:
            try:
                cache[jid] = await disco_info(xmpp, jid)
            except Exception:  # an error reply or a timeout: nothing advertised
                cache[jid] = (set(), set(), ET.Element("none"))
        return cache[jid]

    services = None
    results = []
    for name, how, target, what, suite, needs in CHECKS:
        ok = False
        if how == "stream":
            ok = any(tag in xmpp.stream_features for tag in what)
        elif how == "disco":
            for t in target.split("|"):
                features, _ids, _xml = await info(t)
                if any(ns in features for ns in what):
                    ok = True
        elif how == "identity":
            _f, ids, _xml = await info(target)
            ok = what in ids
        elif how == "form":
            _f, _ids, xml = await info(target)
            ok = form_has_field(xml, what)
        elif how == "service":
            if services is None:
                services = []
                try:
                    for item in await disco_items(xmpp, server):
                        try:
                            f, _i, _x = await disco_info(xmpp, item)
                            services.append(f)
                        except Exception:
                            pass
                except Exception:
                    pass
            ok = any(any(ns in f for ns in what) for f in services)
        elif target == "omemo":
            features, ids, _xml = await info("account")
            ok = ("pubsub", "pep") in ids and "http://jabber.org/protocol/pubsub#publish-options" in features
        elif target == "direct_tls":
            ok = args.direct_tls_port is not None and direct_tls_ok(
                args.host, args.direct_tls_port, server, args.insecure
            )
        elif target == "mam_muc":
            ok = False
            if services is not None:
                ok = any("http://jabber.org/protocol/muc" in f and any(
                    m in f for m in ("urn:xmpp:mam:2", "urn:xmpp:mam:1")) for f in services)
        results.append({"check": name, "suite": suite, "passed": ok, "needs": needs})
    xmpp.disconnect()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jid", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5222)
    ap.add_argument("--direct-tls-port", type=int)
    ap.add_argument("--insecure", action="store_true", help="accept any certificate (self-signed test servers)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = asyncio.run(asyncio.wait_for(run(args), 120))
    if args.json:
        print(json.dumps(results, indent=1))
    core = [r for r in results if not r["needs"]]
    for r in results:
        mark = "PASS" if r["passed"] else "FAIL"
        note = f"  (needs {r['needs']})" if r["needs"] else ""
        print(f"{mark} [{r['suite']}] {r['check']}{note}")
    conv = [r for r in results if r["suite"] == "Conversations"]
    conv_core = [r for r in conv if not r["needs"]]
    print(f"Conversations suite: {sum(r['passed'] for r in conv)}/{len(conv)} "
          f"({sum(r['passed'] for r in conv_core)}/{len(conv_core)} without group chat, upload, proxy)")
    print(f"All checks: {sum(r['passed'] for r in results)}/{len(results)} "
          f"({sum(r['passed'] for r in core)}/{len(core)} without components of issue 6)")
    return 0 if all(r["passed"] for r in core) else 1


if __name__ == "__main__":
    sys.exit(main())
