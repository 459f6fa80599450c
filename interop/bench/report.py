"""Turns oriole-bench RESULT lines into tables (medians over repeats) and Oriole/peer ratios.

    python3 report.py RESULTS MODE [SCENARIOS]

In smoke mode it checks instead that every scenario produced a row against Oriole (and the
relay) with no errors and a non-zero figure, and prints "N passed, M failed" last.
"""
import statistics
import sys
from collections import defaultdict

COLUMNS = {
    "login": ["ok", "logins_s", "p50_ms", "p99_ms", "server_cpu_ms_per_login", "gen_cpu_pct", "other_cpu_pct"],
    "idle": ["ok", "kib_per_session", "rss_kib", "slab_kib_per_conn", "idle_server_cpu_pct", "setup_logins_s", "gen_kib_per_session"],
    "chat-closed": ["clients", "msgs_s", "p50_ms", "p99_ms", "max_ms", "lost", "server_cpu_us_per_msg", "server_cpu_pct", "gen_cpu_pct", "other_cpu_pct"],
    "chat-open": ["clients", "mode", "msgs_s", "p50_ms", "p99_ms", "max_ms", "lost", "server_cpu_us_per_msg", "server_cpu_pct", "gen_cpu_pct"],
    "roster": ["ok", "logins_s", "p50_ms", "p99_ms", "server_cpu_ms_per_login", "gen_cpu_pct"],
    "muc": ["occupants", "joined", "joins_s", "join_settle_s", "server_cpu_us_per_join", "server_cpu_us_per_presence",
            "sent_s", "deliveries_s", "p50_ms", "p99_ms", "max_ms", "lost", "server_cpu_us_per_delivery",
            "server_cpu_us_per_sent", "server_cpu_pct", "rss_kib", "gen_cpu_pct", "other_cpu_pct"],
    "instructions": ["clients", "messages", "ir_per_msg"],
    "offline": ["messages", "store_msgs_s", "store_cpu_us_per_msg", "disk_b_per_msg", "delivered", "deliver_msgs_s", "deliver_cpu_us_per_msg", "errors"],
}
# The figures compared as Oriole/peer, and whether higher is better.
RATIOS = {
    "login": [("logins_s", True), ("server_cpu_ms_per_login", False)],
    "idle": [("kib_per_session", False)],
    "chat-closed": [("msgs_s", True), ("p99_ms", False), ("server_cpu_us_per_msg", False)],
    "chat-open": [("p99_ms", False), ("server_cpu_us_per_msg", False)],
    "roster": [("logins_s", True), ("server_cpu_ms_per_login", False)],
    "offline": [("store_msgs_s", True), ("deliver_msgs_s", True)],
    "muc": [("joins_s", True), ("server_cpu_us_per_join", False), ("p99_ms", False),
            ("server_cpu_us_per_delivery", False)],
}
ORDER = ["relay", "oriole", "prosody", "ejabberd"]


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            if not line.startswith("RESULT "):
                continue
            kv = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
            rows.append(kv)
    return rows


def base_of(scen):
    # idle-N and muc-N (rows per N) share their base scenario's columns.
    for b in ("idle", "muc"):
        if scen == b or scen.startswith(b + "-"):
            return b
    return scen


def key_of(row):
    # idle rows are per N, so N is part of the scenario name.
    s = row["scenario"]
    return f"idle-{row.get('clients')}" if s == "idle" else s


def median(values):
    nums = []
    for v in values:
        try:
            nums.append(float(v))
        except ValueError:
            return values[-1]
    m = statistics.median(nums)
    return f"{m:.2f}".rstrip("0").rstrip(".") if m % 1 else str(int(m))


def main():
    path, mode = sys.argv[1], sys.argv[2]
    rows = parse(path)
    if mode == "smoke":
        return smoke(rows, sys.argv[3] if len(sys.argv) > 3 else "relay login idle chat roster offline muc")
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[key_of(r)][r["server"]].append(r)
    def order(s):
        tail = s.rsplit("-", 1)[-1]
        return (list(COLUMNS).index(base_of(s)), int(tail) if tail.isdigit() else 0)

    for scen in sorted(groups, key=order):
        base = base_of(scen)
        cols = COLUMNS[base]
        servers = sorted(groups[scen], key=lambda s: ORDER.index(s) if s in ORDER else 99)
        print(f"\n### {scen}\n")
        print("| server | runs | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        med = {}
        for s in servers:
            rs = groups[scen][s]
            med[s] = {c: median([r.get(c, "-") for r in rs]) for c in cols}
            print(f"| {s} | {len(rs)} | " + " | ".join(med[s][c] for c in cols) + " |")
        if "oriole" in med:
            for peer in [s for s in servers if s != "oriole"]:
                parts = []
                for col, higher in RATIOS[base]:
                    try:
                        a, b = float(med["oriole"][col]), float(med[peer][col])
                        ratio = a / b if b else float("inf")
                        parts.append(f"{col} {ratio:.2f}x ({'higher' if higher else 'lower'} is better)")
                    except (ValueError, KeyError):
                        continue
                print(f"\nOriole/{peer}: " + "; ".join(parts))
    return 0


def smoke(rows, requested):
    passed = failed = 0
    want = [("relay", "chat-closed", "msgs_s")] + [
        ("oriole", s, m)
        for s, m in [("login", "logins_s"), ("idle", "ok"), ("chat-closed", "msgs_s"),
                     ("chat-open", "msgs_s"), ("roster", "logins_s"), ("offline", "deliver_msgs_s"),
                     ("muc", "deliveries_s")]
    ]
    # The scenarios asked for (--scenarios): each must have produced its rows.
    asked = set(requested.split())
    want = [w for w in want if (w[0] == "relay" and "relay" in asked)
            or (w[0] != "relay" and base_of(w[1]).split("-")[0] in asked)]
    for server, scen, metric in want:
        found = [r for r in rows if r["server"] == server and base_of(r["scenario"]) == scen]
        ok = bool(found) and all(r.get("errors", "0") == "0" and float(r.get(metric, "0")) > 0 for r in found)
        if ok and scen == "offline":
            ok = all(r["delivered"] == r["messages"] for r in found)
        if scen == "muc":
            ok = ok and all(r["joined"] == r["occupants"] for r in found)
        if scen in ("chat-closed", "chat-open", "muc"):
            ok = ok and all(r.get("lost") == "0" for r in found)
        print(f"{'PASS' if ok else 'FAIL'} {server} {scen}" + ("" if ok else f": {found}"))
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
