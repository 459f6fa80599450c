"""aioxmpp clients for the second library's scenarios (interop/aiox), and their vocabulary.

aioxmpp does the stream, STARTTLS, SASL, resource binding, stream management and the
services the scenarios drive (carbons, blocking, PEP, roster, presence). What a scenario
checks is read from the stanzas as they arrive: every inbound message and presence is
recorded by an inbound filter before aioxmpp's own dispatch, so its caches cannot hide what
the server sent.

TLS is always verified: the client trusts only the target's certificate (Prosody's made by
openssl, Oriole's self-signed one from data_dir/tls/) and checks the host name `localhost`.
SASL is restricted to SCRAM (never PLAIN).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from pathlib import Path
from typing import Any, Callable

import aiosasl
import aioxmpp
import aioxmpp.connector
import aioxmpp.sasl
import aioxmpp.security_layer
import aioxmpp.xml
import OpenSSL.SSL

from harness import runner


class Fail(runner.Fail):
    """The scenario found the server misbehaving; the message is the reason printed."""


class Skip(runner.Skip):
    """The scenario does not apply to this configuration."""


def check(cond: Any, reason: str) -> None:
    if not cond:
        raise Fail(reason)


def short(obj: Any, limit: int = 300) -> str:
    """An XSO (stanza) as XML text, cut at `limit` characters."""
    if obj is None:
        return "(nothing)"
    try:
        text = aioxmpp.xml.serialize_single_xso(obj)
    except Exception:
        text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


class Inbox(runner.Inbox):
    """Stanzas (XSOs) as they arrive; a scenario waits for the first one that fits. A predicate
    that trips over an XSO without the attribute it looks at means "does not fit"."""

    failure = Fail

    @staticmethod
    def fits(pred: Callable[[Any], bool], item: Any) -> bool:
        try:
            return bool(pred(item))
        except (AttributeError, TypeError):
            return False

    @staticmethod
    def render(item: Any, limit: int) -> str:
        return short(item, limit)


class ScramOnly(aioxmpp.security_layer.SASLProvider):
    """SASL with aiosasl's SCRAM (the strongest SCRAM hash both sides offer), nothing else."""

    def __init__(self, password: str):
        self.password = password
        self.used: str | None = None

    async def execute(self, client_jid, features, xmlstream, tls_transport):
        async def credentials():
            return client_jid.localpart, self.password

        mech_class, token = self._find_supported(features, [aiosasl.SCRAM])
        if mech_class is None:
            raise Fail("no SCRAM mechanism offered")
        self.used = token[0] if isinstance(token, tuple) else str(token)
        intf = aioxmpp.sasl.SASLXMPPInterface(xmlstream)
        return await self._execute(intf, mech_class(credentials), token)


class TrustFile(aioxmpp.security_layer.PKIXCertificateVerifier):
    """PKIX verification (chain + host name) against one trusted certificate file only."""

    def __init__(self, cafile: str):
        self.cafile = cafile

    def setup_context(self, ctx, transport):
        aioxmpp.security_layer.CertificateVerifier.setup_context(self, ctx, transport)
        ctx.load_verify_locations(self.cafile)

    def verify_callback(self, conn, x509, errno, errdepth, returncode):
        # aioxmpp 0.13's own host name check calls X509.get_extension, which pyOpenSSL no
        # longer has; the same check (subjectAltName dNSName) with `cryptography`.
        if not returncode:
            logging.getLogger("aiox").warning("certificate rejected by OpenSSL (errno %s)", errno)
            return False
        if errdepth == 0:
            from cryptography import x509 as cx

            host = self.transport.get_extra_info("server_hostname")
            try:
                san = x509.to_cryptography().extensions.get_extension_for_class(
                    cx.SubjectAlternativeName).value.get_values_for_type(cx.DNSName)
            except cx.ExtensionNotFound:
                san = []
            if host not in san:
                logging.getLogger("aiox").warning("certificate names %s, not %s", san, host)
                return False
        return True


def ca_file(target) -> str:
    """The certificate the target's server presents (Prosody: ours; Oriole: its own)."""
    cert = getattr(target, "cert", None)
    if cert is not None:
        return str(cert)
    for f in sorted((Path(target.data) / "tls").glob("*")):
        try:
            if b"BEGIN CERTIFICATE" in f.read_bytes():
                return str(f)
        except OSError:
            pass
    raise Fail(f"no certificate found in {Path(target.data) / 'tls'}")


def ssl_context() -> OpenSSL.SSL.Context:
    ctx = OpenSSL.SSL.Context(OpenSSL.SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(OpenSSL.SSL.TLS1_2_VERSION)
    return ctx


class Client:
    """One account's aioxmpp client, with inboxes for what arrives."""

    def __init__(self, ctx, jid: str, password: str):
        self.ctx = ctx
        self.label = jid
        self.sasl = ScramOnly(password)
        cafile = ca_file(ctx.target)
        layer = aioxmpp.security_layer.SecurityLayer(ssl_context, lambda: TrustFile(cafile), True, (self.sasl,))
        t = ctx.target
        self.client = aioxmpp.Client(
            aioxmpp.JID.fromstr(jid), layer,
            override_peer=[(t.host, t.starttls_port, aioxmpp.connector.STARTTLSConnector())],
            logger=logging.getLogger(f"aioxmpp.{jid}"),
            max_initial_attempts=1,
        )
        self.client.backoff_start = datetime.timedelta(seconds=0.2)
        self.messages = Inbox("messages")
        self.presences = Inbox("presences")
        self.failures: list[str] = []
        self.client.on_failure.connect(lambda e: self.failures.append(repr(e)))
        self.client.on_stream_established.connect(self._established)
        self._filters_on = False

    def _established(self):
        if self._filters_on:
            return
        self._filters_on = True
        st = self.client.stream

        def on_message(m):
            self.messages.put(m)
            return m

        def on_presence(p):
            self.presences.put(p)
            return p

        st.service_inbound_message_filter.register(on_message, -10000)
        st.service_inbound_presence_filter.register(on_presence, -10000)

    def summon(self, cls):
        return self.client.summon(cls)

    @property
    def jid(self) -> aioxmpp.JID:
        return self.client.local_jid

    @property
    def stream(self):
        return self.client.stream

    async def start(self, timeout: float = 20) -> "Client":
        self._established()
        self.client.start()
        fail = self.client.on_failure.future()
        done = asyncio.ensure_future(self.client.established_event.wait())
        try:
            await asyncio.wait_for(asyncio.wait([done, fail], return_when=asyncio.FIRST_COMPLETED),
                                   timeout)
        except asyncio.TimeoutError:
            self.client.stop()
            raise Fail(f"{self.label}: no session within {timeout}s ({self.failures or 'no error'})")
        if not self.client.established_event.is_set():
            done.cancel()
            exc = fail.exception() if fail.done() else None
            raise Fail(f"{self.label}: login failed: {exc!r}")
        fail.cancel()
        return self

    def transport(self):
        xs = self.client.stream._xmlstream
        return None if xs is None else xs.transport

    def tls_version(self) -> str | None:
        tr = self.transport()
        obj = tr.get_extra_info("ssl_object") if tr is not None else None
        return obj.get_protocol_version_name() if obj is not None else None

    async def send(self, stanza, timeout: float = 10):
        """Send a stanza; for an IQ return the reply payload (an error reply raises
        aioxmpp.errors.XMPPError)."""
        return await asyncio.wait_for(self.client.send(stanza), timeout)

    def message(self, to: str | aioxmpp.JID, body: str, id: str | None = None,
                type=aioxmpp.MessageType.CHAT) -> aioxmpp.Message:
        to = to if isinstance(to, aioxmpp.JID) else aioxmpp.JID.fromstr(to)
        m = aioxmpp.Message(type_=type, to=to)
        m.body[None] = body
        if id:
            m.id_ = id
        return m

    async def stop(self, wait: float = 3.0) -> None:
        if self.client.running:
            stopped = self.client.on_stopped.future()
            failed = self.client.on_failure.future()
            self.client.stop()
            try:
                await asyncio.wait_for(asyncio.wait([stopped, failed],
                                                    return_when=asyncio.FIRST_COMPLETED), wait)
            except asyncio.TimeoutError:
                pass


def body(m) -> str | None:
    return m.body.any() if m.body else None


async def subscribe_mutual(a: Client, b: Client) -> None:
    """Make a and b subscribed to each other's presence (both: `both`), with plain presence
    stanzas, waiting for each step to arrive. Both must have fetched their roster (e.g.
    aioxmpp.RosterClient summoned before login): a server delivers the approval only to
    interested resources (RFC 6121 3.1.6)."""
    for x, y in ((a, b), (b, a)):
        xb, yb = x.jid.bare(), y.jid.bare()
        await x.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.SUBSCRIBE, to=yb))
        await y.presences.take(lambda p: p.type_ == aioxmpp.PresenceType.SUBSCRIBE
                               and p.from_.bare() == xb, f"subscription request from {xb}")
        await y.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.SUBSCRIBED, to=xb))
        await x.presences.take(lambda p: p.type_ == aioxmpp.PresenceType.SUBSCRIBED
                               and p.from_.bare() == yb, f"subscription approval from {yb}")


async def until(pred: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    """Poll pred() (state aioxmpp keeps from what arrived) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.05)
