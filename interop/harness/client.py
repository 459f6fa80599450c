"""slixmpp clients for the scenarios, and the small vocabulary the scenarios are written in.

slixmpp does the stream, TLS, SASL and resource binding; everything a scenario checks on the
wire (IQ payloads, roster pushes, presence, messages, delay stamps) is read from the raw XML
here, so slixmpp's own caches and conveniences cannot hide what the server sent.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from . import runner
from .runner import Fail, Skip  # noqa: F401  (re-exported: scenarios import them from here)

# The mechanisms a login may use: any SCRAM (RFC 5802 / RFC 7677), never PLAIN.
SCRAM_MECHS = {
    "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512",
    "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS",
}

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def check(cond: Any, reason: str) -> None:
    if not cond:
        raise Fail(reason)


def short(el: ET.Element | None, limit: int = 300) -> str:
    if el is None:
        return "(nothing)"
    text = ET.tostring(el, encoding="unicode")
    return text if len(text) <= limit else text[:limit] + "..."


def error_condition(stanza_xml: ET.Element) -> str | None:
    """The defined condition of a stanza error (RFC 6120 §8.3), e.g. 'item-not-found'."""
    err = stanza_xml.find(q(NS_CLIENT, "error"))
    if err is None:
        return None
    for child in err:
        if child.tag.startswith("{" + NS_STANZAS + "}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return "(no condition)"


class StanzaErrorReply(Exception):
    """An IQ got type='error'. `condition` is the defined condition."""

    def __init__(self, xml: ET.Element):
        self.xml = xml
        self.condition = error_condition(xml)
        super().__init__(f"error reply <{self.condition}/>: {short(xml)}")


class Inbox(runner.Inbox):
    """Stanzas received, in order, and a way to wait for the first one that fits."""

    @staticmethod
    def render(item: Any, limit: int) -> str:
        return short(getattr(item, "xml", item), limit)


class Client(slixmpp.ClientXMPP):
    """One account's connection, wired to record what arrives."""

    def __init__(self, ctx, jid: str, password: str, *, direct_tls: bool = False,
                 mechs: set[str] | None = None, plugins: tuple[str, ...] = ()):
        super().__init__(jid, password)
        self.ctx = ctx
        self.label = jid
        self.direct_tls = direct_tls
        self.ssl_context = ctx.target.ssl_context()
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.plugin["feature_mechanisms"].use_mechs = set(mechs or SCRAM_MECHS)
        # No automatic answers to subscription requests: the scenarios answer themselves.
        self.auto_authorize = None
        self.auto_subscribe = False
        for p in plugins:
            self.register_plugin(p)

        self.messages = Inbox("messages")
        self.presences = Inbox("presences")
        self.roster_pushes = Inbox("roster pushes")
        self.auth_failures: list[str] = []
        self.stream_errors: list[str] = []
        self.session: asyncio.Future = asyncio.get_event_loop().create_future()
        self.ended = asyncio.Event()

        self.register_handler(Callback("interop message", StanzaPath("message"),
                                       lambda s: self.messages.put(s)))
        self.register_handler(Callback("interop presence", StanzaPath("presence"),
                                       lambda s: self.presences.put(s)))
        self.register_handler(Callback("interop roster push", StanzaPath("iq/roster"),
                                       self._roster_iq))
        self.add_event_handler("session_start", self._on_session)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        self.add_event_handler("no_auth", lambda _: self._fail("no SCRAM mechanism offered"))
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("ssl_invalid_chain",
                               lambda e: self._fail(f"TLS certificate rejected: {e}"))

    # --- events ---------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        if not self.session.done():
            self.session.set_exception(Fail(f"{self.label}: {reason}"))
            self.cancel_connection_attempt()

    def _on_session(self, _event) -> None:
        if not self.session.done():
            self.session.set_result(True)

    def _on_failed_auth(self, stanza) -> None:
        self.auth_failures.append(stanza["condition"] or "(no condition)")

    def _on_failed_all_auth(self, _event) -> None:
        self._fail(f"authentication failed: {', '.join(self.auth_failures) or 'no mechanism'}")

    def _on_connection_failed(self, err) -> None:
        self._fail(f"connection failed: {err}")

    def _on_disconnected(self, reason) -> None:
        self.ended.set()
        self._fail(f"disconnected before the session started ({reason}); "
                   f"stream errors: {self.stream_errors or 'none'}")

    def _on_stream_error(self, err) -> None:
        self.stream_errors.append(f"{err['condition']} {err['text'] or ''}".strip())

    def _roster_iq(self, iq) -> None:
        if iq["type"] == "set":
            self.roster_pushes.put(iq)

    # --- actions --------------------------------------------------------------------------
    async def start(self, timeout: float = 20) -> "Client":
        """Connect, TLS, SASL, bind; return when the session is ready."""
        t = self.ctx.target
        port = t.direct_tls_port if self.direct_tls else t.starttls_port
        self.connect(host=t.host, port=port)
        try:
            await asyncio.wait_for(asyncio.shield(self.session), timeout)
        except asyncio.TimeoutError:
            self.cancel_connection_attempt()
            raise Fail(f"{self.label}: no session within {timeout}s "
                       f"(auth failures: {self.auth_failures or 'none'}, "
                       f"stream errors: {self.stream_errors or 'none'})")
        return self

    @property
    def mech(self) -> str:
        m = self.plugin["feature_mechanisms"].mech
        return m.name if m else "?"

    def tls_version(self) -> str | None:
        if self.transport is None:
            return None
        obj = self.transport.get_extra_info("ssl_object")
        return obj.version() if obj is not None else None

    async def stop(self, wait: float = 3.0) -> float:
        """Close our stream; return the seconds until the connection ended."""
        t0 = time.monotonic()
        if self.transport is not None and not self.ended.is_set():
            self.disconnect(wait=wait)
            try:
                await asyncio.wait_for(self.ended.wait(), wait + 5)
            except asyncio.TimeoutError:
                self.abort()
        else:
            self.cancel_connection_attempt()
        return time.monotonic() - t0

    def send_xml(self, text: str) -> None:
        self.send_raw(text)

    def presence(self, *, to: str | None = None, type: str | None = None,
                 status: str | None = None, priority: int | None = None) -> None:
        p = self.make_presence(pto=to, ptype=type, pstatus=status, ppriority=priority)
        p.send()

    def message(self, to: str, body: str, type: str = "chat", id: str | None = None) -> None:
        m = self.make_message(mto=to, mbody=body, mtype=type)
        if id:
            m["id"] = id
        m.send()

    async def iq(self, type: str, payload: str | ET.Element | None = None,
                 to: str | None = None, timeout: float = 10) -> ET.Element:
        """Send an IQ and return the reply's XML; an error reply raises StanzaErrorReply."""
        iq = self.make_iq(ito=to, itype=type)
        if payload is not None:
            iq.append(ET.fromstring(payload) if isinstance(payload, str) else payload)
        return await self.send_iq(iq, timeout)

    async def send_iq(self, iq, timeout: float = 10) -> ET.Element:
        """Send a prepared slixmpp Iq; as iq()."""
        what = short(iq.xml, 160)
        try:
            resp = await iq.send(timeout=timeout)
        except IqError as e:
            raise StanzaErrorReply(e.iq.xml)
        except IqTimeout:
            raise Fail(f"{self.label}: no reply within {timeout}s to {what}")
        return resp.xml

    async def iq_error(self, type: str, payload: str, to: str | None = None,
                       timeout: float = 10) -> StanzaErrorReply:
        try:
            resp = await self.iq(type, payload, to=to, timeout=timeout)
        except StanzaErrorReply as e:
            return e
        raise Fail(f"{self.label}: expected an error reply, got {short(resp)}")

    async def roster_get(self, ver: str | None = None) -> ET.Element:
        attr = "" if ver is None else f" ver='{ver}'"
        return await self.iq("get", f"<query xmlns='jabber:iq:roster'{attr}/>")

    async def roster_item(self, contact: str) -> ET.Element | None:
        res = await self.roster_get()
        query = res.find(q("jabber:iq:roster", "query"))
        check(query is not None, f"{self.label}: roster result without <query/>: {short(res)}")
        for item in query.findall(q("jabber:iq:roster", "item")):
            if item.get("jid") == contact:
                return item
        return None


def push_item(iq, contact: str) -> ET.Element | None:
    """The <item/> for `contact` in a roster push, or None."""
    query = iq.xml.find(q("jabber:iq:roster", "query"))
    if query is None:
        return None
    for item in query.findall(q("jabber:iq:roster", "item")):
        if item.get("jid") == contact:
            return item
    return None


def bare(jid: str) -> str:
    return jid.split("/", 1)[0]
