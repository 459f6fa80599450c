"""Federation interop: Oriole with Prosody and ejabberd, each on its own loopback address
with its own domain, finding each other through a dnsmasq of this run (SRV + A records).

Runs inside the network namespace `run` made (its /etc/resolv.conf points at our dnsmasq),
so no name or port leaks to the machine. For each mode (cert: a CA every server trusts, so
SASL EXTERNAL; dialback: certificates nobody trusts, so Server Dialback) and each peer, two
users (one on Oriole, one on the peer) subscribe to each other, see each other's presence and
chat both ways; then each joins a chatroom (XEP-0045) on the other's conference.<domain>
service and both talk in it. Every process started here is stopped by its pid. Prints one line per check
and, last, "N passed, M failed".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.client import Client, Fail, check, error_condition  # noqa: E402

ORIOLE = ("oriole.example", "127.0.0.2")
PROSODY = ("prosody.example", "127.0.0.3")
EJABBERD = ("ejabberd.example", "127.0.0.4")
PASSWORD = "fedpw-123"
MUC_PREFIX = "conference."
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"

PROCS: list[subprocess.Popen] = []
RESULTS: list[tuple[str, bool, str]] = []


def log(msg: str) -> None:
    print(msg, flush=True)


def run(argv, **kw):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=kw.pop("timeout", 60), **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[-4:]))} failed ({r.returncode}): "
                           f"{(r.stdout + r.stderr).decode(errors='replace')[-600:]}")
    return r


def start(argv, logfile: Path, env=None) -> subprocess.Popen:
    f = open(logfile, "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                         env=env, start_new_session=True)
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen, timeout: float = 15) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    if p in PROCS:
        PROCS.remove(p)


def wait_port(host: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


# ---------------------------------------------------------------------------------------
# Certificates

def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-keyout", str(key), "-out", str(crt), "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"])
    return key, crt


def issue(d: Path, ca: tuple[Path, Path], domain: str) -> tuple[Path, Path]:
    """A leaf for `domain` and its chatroom service `conference.<domain>` (serverAuth and
    clientAuth) and its key; the file holds the chain."""
    key, csr, crt = d / f"{domain}.key", d / f"{domain}.csr", d / f"{domain}.crt"
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={domain}"])
    ext = d / f"{domain}.ext"
    ext.write_text(f"subjectAltName=DNS:{domain},DNS:{MUC_PREFIX}{domain}\nextendedKeyUsage=serverAuth,clientAuth\n"
                   "basicConstraints=CA:FALSE\n")
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
         "-CAcreateserial", "-days", "2", "-out", str(crt), "-extfile", str(ext)])
    crt.write_text(crt.read_text() + ca[1].read_text())
    return crt, key


# ---------------------------------------------------------------------------------------
# Servers

class Server:
    name = ""

    def __init__(self, work: Path, domain: str, host: str):
        self.work, self.domain, self.host = work, domain, host
        self.starttls_port, self.direct_tls_port = 5222, 5223
        self.proc: subprocess.Popen | None = None

    def ssl_context(self) -> ssl.SSLContext:
        c = ssl.create_default_context()
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        return c

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)
            self.proc = None


class Oriole(Server):
    name = "oriole"

    def __init__(self, work, binary: str, cert, key, ca: Path | None):
        super().__init__(work / "oriole", *ORIOLE)
        self.binary = binary
        self.work.mkdir(parents=True)
        ca_line = f"ca_file = '{ca}'" if ca else ""
        self.config = self.work / "oriole.toml"
        self.config.write_text(f"""
[server]
domains = ["{self.domain}"]
data_dir = '{self.work}/data'
[c2s]
starttls = ["{self.host}:5222"]
direct_tls = ["{self.host}:5223"]
[s2s]
listen = ["{self.host}:5269"]
negotiation_timeout_secs = 20
{ca_line}
[upload]
http_listen = "{self.host}:5281"
[turn]
listen = "{self.host}:3478"
[proxy65]
listen = "{self.host}:7777"

[[tls.certificate]]
cert = '{cert}'
key = '{key}'
[log]
level = "info,oriole=debug"
""")
        self.log = self.work / "oriole.log"

    def start(self):
        self.proc = start([self.binary, "--config", str(self.config), "run"], self.log)
        wait_port(self.host, 5222)
        wait_port(self.host, 5269)

    def add_user(self, user):
        run([self.binary, "--config", str(self.config), "user", "add", f"{user}@{self.domain}",
             "--password", PASSWORD])


class Prosody(Server):
    name = "prosody"

    def __init__(self, work, cert, key, ca: Path | None, secure: bool):
        super().__init__(work / "prosody", *PROSODY)
        self.dir = self.work
        (self.dir / "data").mkdir(parents=True)
        (self.dir / "certs").mkdir()
        shutil.copy(cert, self.dir / "certs" / f"{self.domain}.crt")
        shutil.copy(key, self.dir / "certs" / f"{self.domain}.key")
        cafile = f'cafile = "{ca}";' if ca else ""
        self.config = self.dir / "prosody.cfg.lua"
        self.log = self.dir / "prosody.log"
        self.config.write_text(f"""
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.dir}/data"
interfaces = {{ "{self.host}" }}
c2s_ports = {{ 5222 }}
c2s_direct_tls_ports = {{ 5223 }}
s2s_ports = {{ 5269 }}
http_ports = {{ }}
https_ports = {{ }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{self.log}" }} }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "dialback" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {"true" if secure else "false"}
ssl = {{ certificate = "{self.dir}/certs/{self.domain}.crt"; key = "{self.dir}/certs/{self.domain}.key"; {cafile} }}
VirtualHost "{self.domain}"
Component "{MUC_PREFIX}{self.domain}" "muc"
""")
        if ca:
            shutil.copy(ca, self.dir / "ca.crt")
            self.config.write_text(self.config.read_text().replace(str(ca), str(self.dir / "ca.crt")))
        for root, dirs, files in os.walk(self.dir):
            shutil.chown(root, "prosody", "prosody")
            for f in files:
                shutil.chown(os.path.join(root, f), "prosody", "prosody")
        shutil.chown(self.work.parent, "prosody", "prosody")

    def _as(self, argv):
        return ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", "--", *argv]

    def start(self):
        self.proc = start(self._as(["prosody", "--config", str(self.config), "-F"]),
                          self.dir.parent / "prosody.stdout")
        wait_port(self.host, 5222)
        wait_port(self.host, 5269)

    def add_user(self, user):
        run(self._as(["prosodyctl", "--config", str(self.config), "register", user, self.domain,
                      PASSWORD]))


class Ejabberd(Server):
    name = "ejabberd"

    def __init__(self, work, cert, key, ca: Path | None, secure: bool):
        super().__init__(work / "ejabberd", *EJABBERD)
        d = self.work
        for sub in ("logs", "spool", "conf"):
            (d / sub).mkdir(parents=True)
        pem = d / "conf" / "server.pem"
        pem.write_text(Path(cert).read_text() + Path(key).read_text())
        ca_line = ""
        if ca:
            shutil.copy(ca, d / "conf" / "ca.pem")
            ca_line = f'ca_file: "{d}/conf/ca.pem"'
        self.node = f"fedejabberd{os.getpid()}@localhost"
        self.conf = d / "conf" / "ejabberd.yml"
        self.conf.write_text(f"""
hosts: ["{self.domain}"]
loglevel: info
certfiles: ["{pem}"]
{ca_line}
s2s_use_starttls: required
s2s_access: all
auth_method: internal
listen:
  - port: 5222
    ip: "{self.host}"
    module: ejabberd_c2s
    starttls_required: true
  - port: 5269
    ip: "{self.host}"
    module: ejabberd_s2s_in
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_muc:
    host: "{MUC_PREFIX}{self.domain}"
  {"" if secure else "mod_s2s_dialback: {}"}
""")
        self.ctl = d / "conf" / "ejabberdctl.cfg"
        self.ctl.write_text(f'ERLANG_NODE={self.node}\nINET_DIST_INTERFACE=127.0.0.1\n'
                            f'ERL_EPMD_ADDRESS=127.0.0.1\n')
        self.log = d / "logs" / "console.log"
        for root, dirs, files in os.walk(d):
            shutil.chown(root, "ejabberd", "ejabberd")
            for f in files:
                shutil.chown(os.path.join(root, f), "ejabberd", "ejabberd")

    def _ctl(self, *args):
        d = self.work
        return ["setpriv", "--reuid=ejabberd", "--regid=ejabberd", "--init-groups", "--",
                "env", f"HOME={d}", "ERL_EPMD_ADDRESS=127.0.0.1",
                "ejabberdctl", "--config-dir", str(d / "conf"), "--config", str(self.conf),
                "--ctl-config", str(self.ctl), "--logs", str(d / "logs"),
                "--spool", str(d / "spool"), "--node", self.node, *args]

    def start(self):
        self.proc = start(self._ctl("foreground"), self.work.parent / "ejabberd.stdout")
        wait_port(self.host, 5222, 60)
        wait_port(self.host, 5269, 60)

    def add_user(self, user):
        run(self._ctl("register", user, self.domain, PASSWORD), timeout=60)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                run(self._ctl("stop"), timeout=30)
                self.proc.wait(20)
            except Exception:
                pass
        super().stop()


# ---------------------------------------------------------------------------------------
# The scenario

class Ctx:
    def __init__(self, target):
        self.target = target


def record(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, ok, detail))
    log(f"{'PASS' if ok else 'FAIL'} {name}{(': ' + detail) if detail else ''}")


def is_available(p) -> bool:
    return p.xml.get("type") is None


async def scenario(label: str, oriole: Oriole, peer: Server, o_user: str, p_user: str):
    o_jid, p_jid = f"{o_user}@{oriole.domain}", f"{p_user}@{peer.domain}"
    o = Client(Ctx(oriole), o_jid + "/fed", PASSWORD)
    p = Client(Ctx(peer), p_jid + "/fed", PASSWORD)
    clients = [o, p]
    try:
        await o.start()
        await p.start()
        await o.roster_get()
        await p.roster_get()
        o.presence()
        p.presence()

        async def step(name, coro):
            try:
                await coro
                record(f"{label}: {name}", True)
            except (Fail, asyncio.TimeoutError) as e:
                record(f"{label}: {name}", False, str(e))

        async def sub(a, b, a_jid, b_jid):
            a.presence(to=b_jid, type="subscribe")
            await b.presences.take(lambda x: str(x["from"]) == a_jid
                                   and x.xml.get("type") == "subscribe",
                                   f"subscribe from {a_jid}", 30)
            b.presence(to=a_jid, type="subscribed")
            await a.presences.take(lambda x: str(x["from"]) == b_jid
                                   and x.xml.get("type") == "subscribed",
                                   f"subscribed from {b_jid}", 30)
            await a.presences.take(lambda x: str(x["from"]).startswith(b_jid + "/")
                                   and is_available(x),
                                   f"available presence of {b_jid}", 30)

        await step(f"{o_jid} subscribes to {p_jid}, gets approval and presence",
                   sub(o, p, o_jid, p_jid))
        await step(f"{p_jid} subscribes to {o_jid}, gets approval and presence",
                   sub(p, o, p_jid, o_jid))

        async def chat(a, b, a_jid, b_jid, body):
            a.message(b_jid, body)
            m = await b.messages.take(lambda x: str(x["from"]).startswith(a_jid + "/")
                                      and x["body"] == body, f"message from {a_jid}", 30)
            check(m is not None, "no message")

        await step(f"chat {o_jid} -> {p_jid}", chat(o, p, o_jid, p_jid, "héllo <peer> & co"))
        await step(f"chat {p_jid} -> {o_jid}", chat(p, o, p_jid, o_jid, "hi oriole ✓"))

        async def away(a, b, a_jid):
            a.send_xml("<presence xmlns='jabber:client'><show>away</show></presence>")
            await b.presences.take(lambda x: str(x["from"]).startswith(a_jid + "/")
                                   and x.xml.find("{jabber:client}show") is not None,
                                   f"away presence of {a_jid}", 30)

        await step(f"presence update {o_jid} -> {p_jid}", away(o, p, o_jid))
        await step(f"presence update {p_jid} -> {o_jid}", away(p, o, p_jid))
    except Exception as e:  # noqa: BLE001
        record(f"{label}: log in both users", False, f"{type(e).__name__}: {e}")
    finally:
        for c in clients:
            try:
                await c.stop()
            except Exception:  # noqa: BLE001
                pass


def muc_codes(p) -> set[str]:
    x = p.xml.find(f"{{{MUC_USER}}}x")
    if x is None:
        return set()
    return {st.get("code") for st in x.findall(f"{{{MUC_USER}}}status")}


async def muc_scenario(label: str, oriole: Oriole, peer: Server, o_user: str, p_user: str):
    """Federated Multi-User Chat (XEP-0045): the peer's user joins a room on
    conference.oriole.example and talks with the Oriole user in it; the Oriole user joins a
    room on conference.<peer> and talks with the peer's user there."""
    o_jid, p_jid = f"{o_user}@{oriole.domain}", f"{p_user}@{peer.domain}"
    o = Client(Ctx(oriole), o_jid + "/muc", PASSWORD)
    p = Client(Ctx(peer), p_jid + "/muc", PASSWORD)
    clients = [o, p]
    n = 0

    async def step(name, coro):
        try:
            await coro
            record(f"{label}: {name}", True)
            return True
        except (Fail, asyncio.TimeoutError) as e:
            record(f"{label}: {name}", False, str(e))
            return False

    async def join(c, c_jid, room, nick, created: bool):
        me = f"{room}/{nick}"
        c.send_xml(f"<presence xmlns='jabber:client' to='{me}'><x xmlns='{MUC}'>"
                   "<history maxstanzas='0'/></x></presence>")
        pr = await c.presences.take(lambda x: str(x["from"]) == me
                                    and ("110" in muc_codes(x) or x.xml.get("type") == "error"),
                                    f"self-presence (110) from {me}", 30)
        if pr.xml.get("type") == "error":
            err = pr.xml.find("{jabber:client}error")
            text = err.find("{urn:ietf:params:xml:ns:xmpp-stanzas}text") if err is not None else None
            raise Fail(f"{c_jid}'s join refused with <{error_condition(pr.xml)}/> "
                       f"(by {err.get('by') if err is not None else '?'}: "
                       f"{text.text if text is not None else 'no text'})")
        if created:
            check("201" in muc_codes(pr), f"no 201 for the room's creator: {sorted(muc_codes(pr))}")
            await c.iq("set", f"<query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' "
                              "type='submit'/></query>", to=room, timeout=30)

    async def sees(c, room, nick):
        await c.presences.take(lambda x: str(x["from"]) == f"{room}/{nick}"
                               and x.xml.get("type") is None, f"presence of {room}/{nick}", 30)

    async def talk(sender, nick, room, body):
        nonlocal n
        n += 1
        mid = f"fedmuc{n}"
        sender.send_xml(f"<message xmlns='jabber:client' to='{room}' type='groupchat' id='{mid}'>"
                        f"<body>{body}</body></message>")
        for c in (o, p):
            m = await c.messages.take(lambda x: x["type"] == "groupchat" and x["id"] == mid,
                                      f"{c.label}: groupchat {mid}", 30)
            check(str(m["from"]) == f"{room}/{nick}", f"{c.label}: from {m['from']}, "
                                                      f"expected {room}/{nick}")
            check(m["body"] == body.replace("&amp;", "&"), f"{c.label}: body {m['body']!r}")

    try:
        await o.start()
        await p.start()
        o.presence()
        p.presence()

        room = f"fed-{label.replace('/', '-')}@{MUC_PREFIX}{oriole.domain}"
        ok = await step(f"{o_jid} creates {room}; {p_jid} joins it (110) and each sees the other",
                        _seq(lambda: join(o, o_jid, room, "Ori", True),
                             lambda: join(p, p_jid, room, "Peer", False),
                             lambda: sees(o, room, "Peer"), lambda: sees(p, room, "Ori")))
        if ok:
            await step(f"groupchat in {room}: {p_jid} -> both, from room/Peer",
                       talk(p, "Peer", room, "hello from the peer &amp; ✓"))
            await step(f"groupchat in {room}: {o_jid} -> both, from room/Ori",
                       talk(o, "Ori", room, "hello from oriole"))

        room = f"fed-{label.replace('/', '-')}@{MUC_PREFIX}{peer.domain}"
        ok = await step(f"{p_jid} creates {room}; {o_jid} joins it (110) and each sees the other",
                        _seq(lambda: join(p, p_jid, room, "Peer", True),
                             lambda: join(o, o_jid, room, "Ori", False),
                             lambda: sees(p, room, "Ori"), lambda: sees(o, room, "Peer")))
        if ok:
            await step(f"groupchat in {room}: {o_jid} -> both, from room/Ori",
                       talk(o, "Ori", room, "oriole speaking &amp; ✓"))
            await step(f"groupchat in {room}: {p_jid} -> both, from room/Peer",
                       talk(p, "Peer", room, "peer speaking"))
    except Exception as e:  # noqa: BLE001
        record(f"{label}: MUC log in both users", False, f"{type(e).__name__}: {e}")
    finally:
        for c in clients:
            try:
                await c.stop()
            except Exception:  # noqa: BLE001
                pass


async def _seq(*steps):
    """Run the coroutines made by `steps` one after the other (none made after a failure)."""
    for make in steps:
        await make()


def auth_methods(oriole: Oriole, peer_domain: str) -> set[tuple[str, str]]:
    """(direction, auth) pairs from Oriole's log for this peer."""
    out = set()
    for line in oriole.log.read_text(errors="replace").splitlines():
        if peer_domain not in line or "authenticated" not in line and "established" not in line:
            continue
        direction = "inbound" if "direction=\"inbound\"" in line or "direction=inbound" in line else "outbound"
        for m in ("SASL EXTERNAL", "dialback"):
            if m in line:
                out.add((direction, m))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--oriole", required=True)
    ap.add_argument("--peers", default="prosody,ejabberd")
    ap.add_argument("--modes", default="cert,dialback")
    a = ap.parse_args()
    work = Path(a.work)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    certs = work / "certs"
    certs.mkdir(parents=True)
    dns = start(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                 "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
                 "--local=/example/",
                 f"--pid-file={work}/dnsmasq.pid", "--log-queries", "--user=root",
                 *[f"--address=/{d}/{ip}" for d, ip in (ORIOLE, PROSODY, EJABBERD)],
                 *[f"--srv-host=_xmpp-server._tcp.{d},{d},5269,0,5" for d, _ in (ORIOLE, PROSODY, EJABBERD)],
                 # the chatroom services: SRV to the server that hosts them (the A records
                 # above already cover subdomains)
                 *[f"--srv-host=_xmpp-server._tcp.{MUC_PREFIX}{d},{d},5269,0,5"
                   for d, _ in (ORIOLE, PROSODY, EJABBERD)]],
                work / "dnsmasq.log")
    time.sleep(0.5)
    peers = [x for x in a.peers.split(",") if x]
    try:
        for mode in a.modes.split(","):
            d = work / mode
            d.mkdir()
            trusted = make_ca(certs, f"ca-{mode}")
            # In dialback mode every server gets a certificate from a CA nobody trusts.
            ca = trusted[1] if mode == "cert" else None
            secure = mode == "cert"
            oc = issue(certs, trusted, ORIOLE[0]) if mode == "cert" else None
            if mode != "cert":
                (certs / mode).mkdir()
                oc = issue(certs / mode, trusted, ORIOLE[0])
            oriole = Oriole(d, a.oriole, oc[0], oc[1], ca)
            oriole.start()
            for peer_name in peers:
                try:
                    if peer_name == "prosody":
                        pc = issue(certs / mode if mode != "cert" else certs, trusted, PROSODY[0])
                        peer = Prosody(d, pc[0], pc[1], ca, secure)
                    else:
                        pc = issue(certs / mode if mode != "cert" else certs, trusted, EJABBERD[0])
                        peer = Ejabberd(d, pc[0], pc[1], ca, secure)
                    peer.start()
                except Exception as e:  # noqa: BLE001
                    record(f"{mode}/{peer_name}: start", False, str(e))
                    continue
                try:
                    o_user, p_user = f"o{peer_name}", f"p{mode}"
                    oriole.add_user(o_user)
                    peer.add_user(p_user)
                    asyncio.run(asyncio.wait_for(
                        scenario(f"{mode}/{peer_name}", oriole, peer, o_user, p_user), 240))
                    asyncio.run(asyncio.wait_for(
                        muc_scenario(f"{mode}/{peer_name}", oriole, peer, o_user, p_user), 240))
                    want = "SASL EXTERNAL" if mode == "cert" else "dialback"
                    got = auth_methods(oriole, peer.domain)
                    for direction in ("outbound", "inbound"):
                        record(f"{mode}/{peer_name}: {direction} link authenticated by {want}",
                               (direction, want) in got, f"seen {sorted(got)}")
                except Exception as e:  # noqa: BLE001
                    record(f"{mode}/{peer_name}: scenario", False,
                           f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
                finally:
                    peer.stop()
            oriole.stop()
    finally:
        for p in list(PROCS):
            stop(p)
        stop(dns)
    passed = sum(1 for _, ok, _ in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
