"""External service discovery (XEP-0215): the domain lists STUN and TURN with TURN REST
credentials (username 'expiry:user', password base64(HMAC-SHA1(secret, username))).

Against Oriole the credentials are then used for a real TURN Allocate (RFC 5766, long-term
credentials) over UDP with a client written here; Prosody's reference setup advertises an
external TURN server it does not run, so there the scenario stops after the advertisement."""

import asyncio
import hashlib
import hmac
import os
import socket
import struct
import time

from harness.client import Fail, check, q, short

USERS = ["alice"]
NS = "urn:xmpp:extdisco:2"
MAGIC = 0x2112A442


def stun(msg_type: int, attrs: list[tuple[int, bytes]], key: bytes | None = None):
    tx = os.urandom(12)
    body = b""
    for t, v in attrs:
        body += struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)
    if key is None:
        return tx, struct.pack("!HHI", msg_type, len(body), MAGIC) + tx + body
    head = struct.pack("!HHI", msg_type, len(body) + 24, MAGIC) + tx
    mac = hmac.new(key, head + body, hashlib.sha1).digest()
    return tx, head + body + struct.pack("!HH", 0x0008, 20) + mac


def parse(data: bytes):
    msg_type, length, _ = struct.unpack("!HHI", data[:8])
    attrs, p = {}, 20
    while p < 20 + length:
        t, n = struct.unpack("!HH", data[p:p + 4])
        attrs.setdefault(t, data[p + 4:p + 4 + n])
        p += 4 + n + (-n % 4)
    return msg_type, data[8:20], attrs


def exchange(host, port, packet, tx):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(packet, (host, port))
        while True:
            msg_type, rtx, attrs = parse(s.recv(2048))
            if rtx == tx:
                return msg_type, attrs


def allocate(host, port, username, password):
    """Unauthenticated Allocate -> 401 with realm/nonce; then the authenticated one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        transport = [(0x0019, bytes([17, 0, 0, 0]))]
        tx, pkt = stun(0x0003, transport)
        s.sendto(pkt, (host, port))
        msg_type, _, attrs = parse(s.recv(2048))
        check(msg_type == 0x0113 and attrs.get(0x0009, b"\0\0\0\0")[2:4] == b"\x04\x01",
              f"first Allocate: expected 401, got type {msg_type:#x}")
        realm, nonce = attrs[0x0014], attrs[0x0015]
        key = hashlib.md5(username.encode() + b":" + realm + b":" + password.encode()).digest()
        tx, pkt = stun(0x0003, transport + [(0x0006, username.encode()), (0x0014, realm),
                                             (0x0015, nonce)], key)
        s.sendto(pkt, (host, port))
        msg_type, _, attrs = parse(s.recv(2048))
        code = attrs.get(0x0009)
        check(msg_type == 0x0103,
              f"authenticated Allocate failed: type {msg_type:#x} error {code!r}")
        check(0x0016 in attrs, "no XOR-RELAYED-ADDRESS")


async def run(ctx):
    alice = await ctx.login("alice", presence=False)

    ctx.step("the domain advertises the extdisco feature")
    info = await alice.iq("get", "<query xmlns='http://jabber.org/protocol/disco#info'/>",
                          to=ctx.domain)
    feats = [f.get("var") for f in info.iter(q("http://jabber.org/protocol/disco#info", "feature"))]
    check(NS in feats, f"{NS} not in {feats}")

    ctx.step("alice asks for the services")
    res = await alice.iq("get", f"<services xmlns='{NS}'/>", to=ctx.domain)
    services = list(res.iter(q(NS, "service")))
    turn = [s for s in services if s.get("type") == "turn"]
    check(turn, f"no TURN service: {short(res)}")
    turn = turn[0]
    username, password = turn.get("username"), turn.get("password")
    check(username and password, f"TURN service without credentials: {short(turn)}")
    expiry, _, user = username.partition(":")
    check(expiry.isdigit() and int(expiry) > time.time(), f"username {username!r}")
    # The user part is optional in the TURN REST scheme (Prosody leaves it out).
    check(not user or user.startswith("alice@"), f"username {username!r} names someone else")

    if ctx.target.name != "oriole":
        return
    ctx.step("a TURN Allocate with those credentials succeeds")
    await asyncio.to_thread(allocate, turn.get("host"), int(turn.get("port")), username, password)
