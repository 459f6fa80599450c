"""Servers under test: Oriole (the subject) and Prosody (the reference).

A target owns one server instance: its config, data folder, log, addresses and process.
Each scenario makes its own target in its own work folder, on a loopback address and ports
picked at run time, so scenarios and concurrent runs never share a port or a data folder.

Every process started here is recorded as a pid file under WORK/pids/ (pid and the command
line's marker), removed when the process has been reaped. `interop/run` reads leftovers on
exit and stops them by pid, so nothing outlives a run even if this Python process is killed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

DOMAIN = "localhost"


class TargetError(Exception):
    """The server could not be started, stopped or administered."""


def pick_host() -> str:
    """A random loopback address in 127.64.0.0/10 (INTEROP_HOST overrides it).

    Ports are taken from the kernel (bind to port 0), and a separate address per scenario
    makes a collision between two concurrent runs or scenarios practically impossible.
    """
    forced = os.environ.get("INTEROP_HOST")
    if forced:
        return forced
    rnd = random.SystemRandom()
    return f"127.{rnd.randint(64, 127)}.{rnd.randint(0, 255)}.{rnd.randint(2, 254)}"


def free_ports(host: str, count: int) -> list[int]:
    """`count` distinct TCP ports that are free on `host` right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class Target:
    """Common process handling. Subclasses write configs and run admin commands."""

    name = "?"

    def __init__(self, work: Path, *, registration: bool = False):
        self.work = work
        self.registration = registration
        self.host = pick_host()
        self.starttls_port, self.direct_tls_port = free_ports(self.host, 2)
        # HTTP upload (HTTPS), TURN (UDP, same number) and the SOCKS5 proxy.
        self.upload_port, self.turn_port, self.proxy_port = free_ports(self.host, 3)
        self.domain = DOMAIN
        self.proc: subprocess.Popen | None = None
        self.stdout_path = work / "server.out"
        self.log_path = self.stdout_path  # what error messages quote from
        (work / "pids").mkdir(parents=True, exist_ok=True)
        self.exit_codes: list[int] = []
        # Prosody community modules a scenario needs (its PROSODY_MODULES); Oriole ignores it.
        self.extra_modules: tuple[str, ...] = ()

    # --- to be provided by subclasses -------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files, certificates, folders. Called once before the first start."""

    def ssl_context(self) -> ssl.SSLContext:
        raise NotImplementedError

    def add_user(self, localpart: str, password: str) -> None:
        raise NotImplementedError

    def set_password(self, localpart: str, password: str) -> None:
        raise NotImplementedError

    def del_user(self, localpart: str) -> None:
        raise NotImplementedError

    def list_users(self) -> list[str]:
        raise NotImplementedError

    # --- process handling ---------------------------------------------------------------
    def _record(self, proc: subprocess.Popen) -> Path:
        p = self.work / "pids" / str(proc.pid)
        p.write_text(f"{proc.pid}\n{self.work}\n")
        return p

    def run_cmd(self, argv: list[str], *, timeout: float = 30, env=None, input: bytes | None = None) -> str:
        """Run a short admin command to completion (with a timeout); return its output."""
        with open(self.work / "admin.log", "a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            pidfile = self._record(proc)
            try:
                out, _ = proc.communicate(input=input, timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                log.write(out.decode(errors="replace"))
                raise TargetError(f"{' '.join(argv[:4])}... timed out after {timeout}s")
            finally:
                pidfile.unlink(missing_ok=True)
            text = out.decode(errors="replace")
            log.write(text)
            log.write(f"[exit {proc.returncode}]\n")
        if proc.returncode != 0:
            raise TargetError(
                f"`{' '.join(argv)}` exited with {proc.returncode}: {text.strip()[-300:]}"
            )
        return text

    def start(self, timeout: float = 30) -> None:
        if self.proc is not None:
            raise TargetError("already running")
        with open(self.stdout_path, "ab") as log:
            log.write(f"==== start {time.strftime('%H:%M:%S')}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        self._pidfile = self._record(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self._reaped()
                raise TargetError(
                    f"{self.name} exited with {code} before listening; log: {tail(self.log_path)}"
                )
            if port_open(self.host, self.starttls_port) and port_open(
                self.host, self.direct_tls_port
            ):
                return
            time.sleep(0.05)
        self.kill()
        raise TargetError(
            f"{self.name} did not listen on {self.host}:{self.starttls_port} and "
            f":{self.direct_tls_port} within {timeout}s; log: {tail(self.log_path)}"
        )

    def env(self):
        return None

    def _reaped(self) -> None:
        assert self.proc is not None
        self.exit_codes.append(self.proc.returncode)
        self._pidfile.unlink(missing_ok=True)
        self.proc = None

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, wait for a clean exit; returns the exit code. Kills after `timeout`."""
        if self.proc is None:
            raise TargetError("not running")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TargetError(f"{self.name} did not exit within {timeout}s of SIGTERM")
        code = self.proc.returncode
        self._reaped()
        return code

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                return
        self._reaped()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def crashed(self) -> str | None:
        """A message if the server died unexpectedly while it should be running."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self._reaped()
            return f"{self.name} died with exit code {code}; log: {tail(self.log_path)}"
        return None

    def jid(self, localpart: str) -> str:
        return f"{localpart}@{self.domain}"


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class OrioleTarget(Target):
    name = "oriole"

    def __init__(self, work: Path, *, registration: bool = False):
        super().__init__(work, registration=registration)
        self.bin = os.environ.get("ORIOLE_BIN_ABS") or os.environ.get("ORIOLE_BIN") or "oriole"
        self.config = work / "oriole.toml"
        self.data = work / "data"

    def prepare(self) -> None:
        level = os.environ.get("ORIOLE_LOG_LEVEL", "debug")
        text = f"""# written by interop/harness/target.py
[server]
domains = ["{self.domain}"]
data_dir = "{self.data}"

[c2s]
starttls = ["{self.host}:{self.starttls_port}"]
direct_tls = ["{self.host}:{self.direct_tls_port}"]

[s2s]
listen = []

[upload]
http_listen = "{self.host}:{self.upload_port}"
public_url = "https://{self.domain}:{self.upload_port}"

# relay_private_peers: the test's TURN clients and their relayed addresses are all on
# loopback, which Oriole refuses as a peer by default (no relaying into the server's own
# network); extdisco and turn_coturn relay between loopback addresses, so it is on here.
[turn]
listen = "{self.host}:{self.turn_port}"
host = "{self.host}"
relay_private_peers = true

[proxy65]
listen = "{self.host}:{self.proxy_port}"
host = "{self.host}"

[log]
level = "{level}"
"""
        if self.registration:
            text += "\n[registration]\nallow = true\n"
        self.config.write_text(text)

    def command(self) -> list[str]:
        return [self.bin, "run", "--config", str(self.config)]

    def env(self):
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        return env

    def ssl_context(self) -> ssl.SSLContext:
        # The self-signed certificate Oriole makes in data_dir/tls/ on first start.
        # INTEROP_ORIOLE_VERIFY=1 trusts that file (any *.pem/*.crt holding a certificate)
        # and checks the host name; by default verification is off.
        if os.environ.get("INTEROP_ORIOLE_VERIFY") == "1":
            ctx = ssl.create_default_context()
            found = False
            for f in sorted((self.data / "tls").glob("*")):
                try:
                    if b"BEGIN CERTIFICATE" in f.read_bytes():
                        ctx.load_verify_locations(cafile=str(f))
                        found = True
                except (OSError, ssl.SSLError):
                    pass
            if not found:
                raise TargetError(f"no certificate found in {self.data / 'tls'}")
            return ctx
        return _insecure_context()

    def _user(self, *args: str) -> str:
        return self.run_cmd([self.bin, "user", *args, "--config", str(self.config)], env=self.env())

    def add_user(self, localpart: str, password: str) -> None:
        self._user("add", self.jid(localpart), "--password", password)

    def set_password(self, localpart: str, password: str) -> None:
        self._user("passwd", self.jid(localpart), "--password", password)

    def del_user(self, localpart: str) -> None:
        self._user("del", self.jid(localpart))

    def list_users(self) -> list[str]:
        out = self._user("list", self.domain)
        return [line.strip() for line in out.splitlines() if line.strip()]


class ProsodyTarget(Target):
    """Prosody from Debian, run as the prosody user with a config of our own."""

    name = "prosody"

    def __init__(self, work: Path, *, registration: bool = False):
        super().__init__(work, registration=registration)
        self.dir = work / "prosody"
        self.config = self.dir / "prosody.cfg.lua"
        self.cert = self.dir / "certs" / f"{self.domain}.crt"
        self.key = self.dir / "certs" / f"{self.domain}.key"

    def _as_prosody(self, argv: list[str]) -> list[str]:
        return ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", "--", *argv]

    def prepare(self) -> None:
        (self.dir / "certs").mkdir(parents=True)
        (self.dir / "data").mkdir()
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-keyout", str(self.key), "-out", str(self.cert),
                "-subj", f"/CN={self.domain}", "-addext", f"subjectAltName=DNS:{self.domain}",
            ],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=30,
        )
        modules = [
            "roster", "saslauth", "tls", "disco", "vcard", "private", "ping", "version",
            "time", "offline", "smacks", "csi_simple", "carbons", "mam", "blocklist", "pep",
            "turn_external",
        ]
        if self.registration:
            modules.append("register")
        modules.extend(self.extra_modules)
        mods = ", ".join(f'"{m}"' for m in modules)
        self.config.write_text(f"""-- written by interop/harness/target.py
data_path = "{self.dir}/data"
certificates = "{self.dir}/certs"
interfaces = {{ "{self.host}" }}
c2s_ports = {{ {self.starttls_port} }}
c2s_direct_tls_ports = {{ {self.direct_tls_port} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ {self.upload_port} }}
https_interfaces = {{ "{self.host}" }}
https_certificate = "{self.cert}"
https_key = "{self.key}"
http_external_url = "https://upload.{self.domain}:{self.upload_port}/"
http_file_share_size_limit = 10485760
turn_external_host = "{self.host}"
turn_external_port = {self.turn_port}
turn_external_secret = "interop-turn-secret"
proxy65_ports = {{ {self.proxy_port} }}
proxy65_interfaces = {{ "{self.host}" }}
component_ports = {{ }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{self.dir}/prosody.log" }} }}
modules_enabled = {{ {mods} }}
modules_disabled = {{ "s2s", "s2s_auth_certs" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = {"true" if self.registration else "false"}
min_seconds_between_registrations = 0
default_archive_policy = true
archive_expires_after = "never"
VirtualHost "{self.domain}"
Component "conference.{self.domain}" "muc"
Component "upload.{self.domain}" "http_file_share"
Component "proxy.{self.domain}" "proxy65"
""")
        shutil.chown(self.work, "prosody", "prosody")
        for root, dirs, files in os.walk(self.dir):
            shutil.chown(root, "prosody", "prosody")
            for f in files:
                shutil.chown(os.path.join(root, f), "prosody", "prosody")
        self.log_path = self.dir / "prosody.log"

    def command(self) -> list[str]:
        return self._as_prosody(["prosody", "--config", str(self.config), "-F"])

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def _ctl(self, *args: str, input: bytes | None = None) -> str:
        return self.run_cmd(
            self._as_prosody(["prosodyctl", "--config", str(self.config), *args]), input=input
        )

    def add_user(self, localpart: str, password: str) -> None:
        self._ctl("register", localpart, self.domain, password)

    def set_password(self, localpart: str, password: str) -> None:
        # `prosodyctl passwd` asks twice on standard input.
        self._ctl("passwd", self.jid(localpart), input=f"{password}\n{password}\n".encode())

    def del_user(self, localpart: str) -> None:
        self._ctl("deluser", self.jid(localpart))

    def list_users(self) -> list[str]:
        accounts = self.dir / "data" / self.domain.replace(".", "%2e") / "accounts"
        return sorted(f"{p.stem}@{self.domain}" for p in accounts.glob("*.dat"))


TARGETS = {"oriole": OrioleTarget, "prosody": ProsodyTarget}
