"""Acting alone: N realistic messages stored (untimed), then `process_pending`
timed in-process, on a fresh SQLite file and/or PostgreSQL database. Prints
ms per message acted on (wall, and CPU of this process); --profile writes a cProfile dump.

    .venv/bin/python bench/act.py [--count 2000] [--database sqlite|postgresql|both]
                                  [--batch 50] [--profile PATH] [--html]

--html sends each message as Apple Mail and Outlook do: multipart/alternative, its text as
flowed plain text and as HTML with links, attachments after it in multipart/mixed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import _prepare, make_messages  # noqa: E402
from bench.poll import _database, _drop  # noqa: E402


def one_run(kind: str, messages: list[bytes], batch: int, profile: str | None) -> float:
    from switchboard.db import db
    from switchboard.inbound.models import IncomingAccount
    from switchboard.inbound.process import process_pending
    from switchboard.inbound.store import store_message
    from tests.conftest import make_test_app

    with tempfile.TemporaryDirectory() as tmp:
        url, name = _database(kind, tmp)
        try:
            _prepare(url)
            app = make_test_app(url)
            with app.app_context():
                account = db.session.scalar(db.select(IncomingAccount))
                for raw in messages:
                    store_message(raw, source="lmtp", account=account, envelope_to=["help@desk.test"])
                db.session.commit()
                profiler = None
                if profile:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                started, cpu_started = time.perf_counter(), time.process_time()
                results = process_pending(batch=batch)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(f"{profile}.{kind}")
                statuses = {}
                for r in results:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                db.session.remove()
                db.engine.dispose()
            ms = elapsed * 1000 / max(1, len(results))
            cpu_ms = cpu * 1000 / max(1, len(results))
            print(f"{kind}: {len(results)} acted in {elapsed:.2f}s = {ms:.2f} ms/message wall, "
                  f"{cpu_ms:.2f} ms/message CPU of this process {statuses}", flush=True)
            return ms
        finally:
            _drop(name)


def as_html_mail(raw: bytes) -> bytes:
    """The same message as a client that writes HTML sends it (see --html)."""
    import email
    import email.policy
    import html

    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    body = "".join(f'<p>{html.escape(p)} <a href="https://kb.example.com/article/{i}">see the article</a></p>'
                   for i, p in enumerate(paragraphs))
    files = [(part.get_content(), part.get_filename()) for part in msg.iter_attachments()]
    msg.clear_content()
    # Soft line breaks inside each paragraph, as a flowed sender wraps them.
    flowed = "\n\n".join(" \n".join(p.split("\n")) for p in text.split("\n\n"))
    msg.set_content(flowed, params={"format": "flowed"})
    msg.add_alternative(f"<html><head><title>{html.escape(msg['Subject'])}</title></head><body>{body}</body></html>",
                        subtype="html")
    for data, filename in files:
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--profile")
    parser.add_argument("--html", action="store_true", help="HTML mail with links (see above)")
    args = parser.parse_args()
    messages = make_messages(args.count)
    if args.html:
        messages = [as_html_mail(raw) for raw in messages]
    for kind in (["sqlite", "postgresql"] if args.database == "both" else [args.database]):
        one_run(kind, messages, args.batch, args.profile)


if __name__ == "__main__":
    main()
