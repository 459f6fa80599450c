#!/usr/bin/env python3
"""Start a server (Oriole or, as the reference, Prosody) with a fresh default-like
configuration, create one account, run interop/compliance/check.py against it, stop the
server, and print the score.

    python -m compliance.run --target oriole|prosody [--strict]     (from interop/)

Prosody runs with the modules a well-equipped Prosody 0.12 has (carbons, mam, blocklist,
smacks, csi_simple, pep, …): it is the reference that shows the checker finds what a real
server advertises. Without --strict the exit status is 0 whatever the score; with --strict
(what CI runs) it is check.py's: non-zero when any check not marked as needing a later issue
fails.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness.target import TARGETS  # noqa: E402

PROSODY_EXTRA = ["carbons", "mam", "blocklist", "smacks", "csi_simple", "pep", "bookmarks",
                 "vcard_legacy", "server_contact_info"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=sorted(TARGETS), default="oriole")
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="oriole-compliance."))
    os.chmod(work, 0o755)
    target = TARGETS[args.target](work)
    target.prepare()
    if args.target == "prosody":
        # The reference gets the modules Prosody 0.12 ships for the checked features.
        text = target.config.read_text()
        extra = ", ".join(f'"{m}"' for m in PROSODY_EXTRA)
        text = text.replace("modules_enabled = { ", f"modules_enabled = {{ {extra}, ", 1)
        target.config.write_text(text)
    code = 1
    try:
        target.add_user("checker", "compliance-pw")
        target.start()
        proc = subprocess.run(
            [sys.executable, str(HERE / "check.py"), "--jid", target.jid("checker"),
             "--password", "compliance-pw", "--host", target.host,
             "--port", str(target.starttls_port),
             "--direct-tls-port", str(target.direct_tls_port), "--insecure"],
            timeout=180, stdin=subprocess.DEVNULL,
        )
        code = proc.returncode
    finally:
        target.stop()
    print(f"compliance run against {args.target} finished (checker exit {code})")
    return code if args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
