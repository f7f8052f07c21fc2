"""How fast the outbox can hand mail to an SMTP server: N small composed mails over one reused
connection to a local aiosmtpd sink (in its own process), median mails/s of several runs.

    .venv/bin/python bench/smtp_send.py [--count 5000] [--runs 3] [--security none|starttls]
                                        [--precompose]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from switchboard.outbox.compose import (  # noqa: E402
    compose_message, message_to_bytes, new_message_id, new_reply_token,
)
from switchboard.outbox.smtp import Outcome, SmtpServerSettings, Transport  # noqa: E402


def _serve(security: str, pki_dir: str, ready, stop) -> None:
    from tests.outbox.certs import make_test_pki
    from tests.outbox.smtp_sink import SmtpSink

    pki = make_test_pki(Path(pki_dir)) if security != "none" else None
    sink = SmtpSink(tls=security, pki=pki)
    sink.start()
    ready.put(sink.port)
    stop.wait()
    received, connections = len(sink.messages), sink.connections
    sink.stop()
    ready.put((received, connections))


def _compose(i: int) -> tuple[str, bytes]:
    recipient = f"customer{i % 50}@example.com"
    msg = compose_message(
        from_addr="servicedesk@example.org", from_name="Acme Service Desk",
        to=[recipient], cc=[], subject=f"CALL-{i} logged: printer on floor 3 jams",
        text="Hello,\n\nWe have logged your call.\n\nAcme Service Desk\n",
        message_id=new_message_id("desk.example.org"), reply_token=new_reply_token())
    return recipient, message_to_bytes(msg)


def _one_run(settings: SmtpServerSettings, count: int, precompose: bool) -> float:
    ready = [_compose(i) for i in range(count)] if precompose else None
    started = time.perf_counter()
    with Transport([settings]) as transport:
        for i in range(count):
            recipient, data = ready[i] if ready else _compose(i)
            result = transport.send(None, [recipient], data)
            if result.outcome is not Outcome.SENT:
                raise SystemExit(f"mail {i} not sent: {result}")
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--security", choices=("none", "starttls"), default="none")
    parser.add_argument("--precompose", action="store_true",
                        help="compose all mails before timing: the transport alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as pki_dir:
        ready, stop = multiprocessing.Queue(), multiprocessing.Event()
        server = multiprocessing.Process(target=_serve, args=(args.security, pki_dir, ready, stop))
        server.start()
        try:
            port = ready.get(timeout=30)
            settings = SmtpServerSettings(
                "bench", "127.0.0.1", port, args.security, from_address="desk@example.org",
                ca_file=str(Path(pki_dir) / "ca.pem") if args.security != "none" else None)
            rates = []
            for run in range(args.runs):
                rate = _one_run(settings, args.count, args.precompose)
                rates.append(rate)
                print(f"run {run + 1}: {args.count} mails, {rate:,.0f} mails/s", flush=True)
        finally:
            stop.set()
            received, connections = ready.get(timeout=30)
            server.join(10)
    what = "send only" if args.precompose else "compose + send"
    print(f"median: {statistics.median(rates):,.0f} mails/s ({what}, {args.security}, "
          f"one connection per run; sink got {received} mails over "
          f"{connections} connections)")


if __name__ == "__main__":
    main()
