"""coturn's own TURN test client against the server's TURN service, with credentials from
External Service Discovery (XEP-0215).

alice asks the domain for its services (`<services xmlns='urn:xmpp:extdisco:2'/>`, raw IQ:
slixmpp 1.17 has no xep_0215 plugin) and takes the UDP TURN entry with its TURN REST
credentials (username `expiry[:user]`, password base64(HMAC-SHA1(secret, username))). Then
coturn's `turnutils_uclient` (Debian package `coturn`, which interop/run installs) runs with
those credentials in client-to-client mode (`-y`: two clients each allocate a relayed
address, bind channels to the other's relayed address, and send each other messages through
both relays; `-c`: no RTCP allocations, so no EVEN-PORT/RESERVATION-TOKEN). The scenario
passes only if uclient exits 0, reports as many messages received as sent (all sent ones,
none lost) and no error. The same run with a wrong password must fail (an allocation refused
shows as a failure here, so the check above can fail).

The relayed addresses are on the server's loopback address, so the peers are loopback
addresses: Oriole's test config sets `turn.relay_private_peers = true` for that
(harness/target.py), as coturn needs `--allow-loopback-peers`.

Against Prosody, whose mod_turn_external only advertises a TURN server it does not run, the
harness runs coturn's `turnserver` as that server (same address, port and shared secret as
Prosody's config), so the scenario is proven against Prosody + coturn before it runs against
Oriole's built-in TURN server.
"""

import asyncio
import re
import shutil
import subprocess

from harness.client import Fail, check, q, short

USERS = ["alice"]
TIMEOUT = 60
NS = "urn:xmpp:extdisco:2"
MESSAGES = 20


async def turn_credentials(ctx):
    alice = await ctx.login("alice", presence=False)
    res = await alice.iq("get", f"<services xmlns='{NS}'/>", to=ctx.domain)
    turn = [s for s in res.iter(q(NS, "service"))
            if s.get("type") == "turn" and s.get("transport", "udp") == "udp"]
    check(turn, f"no UDP TURN service: {short(res)}")
    t = turn[0]
    check(t.get("username") and t.get("password"), f"TURN without credentials: {short(t)}")
    check(t.get("host") and (t.get("port") or "3478").isdigit(), f"TURN host/port: {short(t)}")
    return t.get("host"), int(t.get("port") or 3478), t.get("username"), t.get("password")


def start_turnserver(ctx, host, port):
    """coturn's turnserver as the TURN server Prosody's mod_turn_external advertises."""
    exe = shutil.which("turnserver")
    if exe is None:
        raise Fail("coturn's turnserver is not installed (interop/run installs coturn)")
    work = ctx.work / "turnserver"
    work.mkdir(exist_ok=True)
    argv = [exe, "-n", "--listening-ip", host, "--listening-port", str(port),
            "--relay-ip", host, "--min-port", "49152", "--max-port", "65535",
            "--use-auth-secret", "--static-auth-secret", "interop-turn-secret",
            "--realm", "localhost", "--allow-loopback-peers", "--no-tcp", "--no-tls",
            "--no-dtls", "--no-tcp-relay", "--no-cli", "--db", str(work / "turndb"),
            "--pidfile", str(work / "turnserver.pid"), "--log-file", "stdout", "--simple-log"]
    log = open(work / "turnserver.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    pidfile = ctx.work / "pids" / str(proc.pid)
    pidfile.write_text(f"{proc.pid}\n{ctx.work}\n")
    return proc, pidfile, log


def stop(proc, pidfile):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    pidfile.unlink(missing_ok=True)


async def uclient(ctx, label, host, port, username, password):
    """Run turnutils_uclient -y -c; return (exit code, output). Its output goes to
    WORK/uclient-LABEL.log."""
    exe = shutil.which("turnutils_uclient")
    if exe is None:
        raise Fail("coturn's turnutils_uclient is not installed (interop/run installs coturn)")
    argv = [exe, "-y", "-c", "-n", str(MESSAGES), "-l", "120", "-z", "5",
            "-u", username, "-w", password, "-p", str(port), host]
    ctx.log.info("RUN %s", " ".join(argv))
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    pidfile = ctx.work / "pids" / str(proc.pid)
    pidfile.write_text(f"{proc.pid}\n{ctx.work}\n")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        (ctx.work / f"uclient-{label}.log").write_bytes(out)
        raise Fail(f"turnutils_uclient ({label}) still running after 20 s")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        pidfile.unlink(missing_ok=True)
    text = out.decode(errors="replace")
    (ctx.work / f"uclient-{label}.log").write_text(text)
    return proc.returncode, text


def relayed(code, text):
    """(sent, received, lost) if uclient relayed messages; a reason string if it did not."""
    # Progress lines carry running totals; the last one is the final count.
    totals = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text)
    lost = re.findall(r"Total lost packets (\d+)", text)
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    if code != 0:
        return f"exit code {code}; last lines: {' | '.join(text.splitlines()[-4:])}"
    if not totals or not lost:
        return f"no message totals in its output: {' | '.join(text.splitlines()[-4:])}"
    if errors:
        return f"errors: {' | '.join(errors[:3])}"
    return int(totals[-1][0]), int(totals[-1][1]), int(lost[-1])


async def run(ctx):
    ctx.step("alice gets TURN REST credentials with XEP-0215")
    host, port, username, password = await turn_credentials(ctx)
    expiry = username.partition(":")[0]
    check(expiry.isdigit(), f"username {username!r} is not TURN REST (expiry[:user])")

    server = None
    if ctx.target.name == "prosody":
        ctx.step("start coturn's turnserver behind Prosody's mod_turn_external")
        check((host, port) == (ctx.target.host, ctx.target.turn_port),
              f"Prosody advertised {host}:{port}")
        server = start_turnserver(ctx, host, port)
        await asyncio.sleep(1.0)
        check(server[0].poll() is None, f"turnserver exited with {server[0].returncode}")
    try:
        ctx.step("turnutils_uclient -y relays between two allocations with those credentials")
        code, text = await uclient(ctx, "good", host, port, username, password)
        res = relayed(code, text)
        if isinstance(res, str):
            raise Fail(f"turnutils_uclient failed: {res}")
        sent, received, lost = res
        # -y -c: two clients, each sends MESSAGES to the other through both relays.
        check(sent == 2 * MESSAGES, f"uclient sent {sent} messages, not 2 x {MESSAGES}")
        check(received == sent and lost == 0,
              f"uclient sent {sent}, received {received}, lost {lost}")

        ctx.step("the same with a wrong password fails (the check above can fail)")
        code, text = await uclient(ctx, "badpass", host, port, username, password + "x")
        res = relayed(code, text)
        check(isinstance(res, str) or res[1] == 0,
              f"uclient relayed with a wrong password: {res}")
    finally:
        if server is not None:
            stop(server[0], server[1])
            server[2].close()
