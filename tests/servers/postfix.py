"""A real Postfix on loopback that relays test domains to an LMTP port, in its own config/queue folder.

Started with `postfix -c DIR start-fg` under supervise.py; never touches /etc/postfix or the system
queue. Accepts SMTP (STARTTLS offered) and implicit-TLS SMTP, relays the given domains with
`lmtp:inet:127.0.0.1:PORT`, refuses every other recipient, and writes its log to its own file.
Deferred mail is retried only by flush(), so tests decide when a retry happens.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .process import HOST, ServerFailed, Supervised, free_ports
from .tls import TlsFiles

INSTALL_HINT = "apt-get install postfix (or run .ci/install-services)"

_MAIN_CF = """\
# Written by tests/servers/postfix.py for one test; never /etc/postfix.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.switchboard.test
mydomain = switchboard.test
myorigin = $myhostname
# Nothing is delivered locally and nothing leaves for the internet: only the relay domains
# below are accepted, and they all go to the test's LMTP port.
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {domains}
transport_maps = inline:{{ {transports} }}
smtpd_relay_restrictions = reject_unauth_destination
default_transport = error:outbound mail is disabled in tests
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
syslog_name = postfix-test
biff = no
append_dot_mydomain = no
# Postfix waits a second per message for slow in-flows by default; tests send bursts.
in_flow_delay = 0
# A receiver that does not answer should fail a test in seconds, not hang it for minutes.
lmtp_connect_timeout = 5s
lmtp_data_done_timeout = 30s
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
"""

# Debian's master.cf minus the optional pipes, without chroot (no jail is prepared), and with the
# SMTP listeners on the instance's own loopback ports.
_MASTER_CF = """\
{host}:{smtp} inet n - n - - smtpd
{host}:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
_DELIVERY = re.compile(r"\]: (?P<queue_id>[0-9A-Za-z]+): to=<(?P<recipient>[^>]*)>,"
                       r".* status=(?P<status>\w+) \((?P<reason>.*)\)$")


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt as Postfix logged it."""

    queue_id: str
    recipient: str
    status: str  # "sent", "deferred", "bounced"
    reason: str  # the remote answer or the error, e.g. "250 2.0.0 Ok" or "connect to ...: refused"


class Postfix:
    """A handle on one Postfix instance; see the module docstring."""

    host = HOST

    def __init__(self, binary: str, tls: TlsFiles, lmtp_port: int,
                 domains: tuple[str, ...] = ("desk.test",), *, settings: dict[str, str] | None = None,
                 root: Path | None = None):
        self.binary = binary
        self.tls = tls
        self.lmtp_port = lmtp_port
        self.domains = tuple(domains)
        self.settings = dict(settings or {})
        # Not pytest's tmp_path: the postfix user must reach the queue through every parent.
        self.root = Path(root or tempfile.mkdtemp(prefix="sb-postfix-"))
        os.chmod(self.root, 0o755)
        self.smtp_port, self.smtps_port = free_ports(2)
        self._log_mark = 0
        self._process: Supervised | None = None

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def log_path(self) -> Path:
        return self.root / "maillog"

    @property
    def ca_path(self) -> Path:
        return self.tls.ca

    # -- running ---------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        if self.running:
            return
        for attempt in range(3):
            self._write_config()
            self._process = Supervised(
                [self.binary, "-c", str(self.config_dir), "start-fg"],
                # What `postfix stop` does, minus its 1 s polling sleeps: SIGTERM the master.
                pidfile=self.root / "queue" / "pid" / "master.pid",
                output_path=self.root / "postfix.out", cwd=self.root)
            self._process.start()
            try:
                self._process.wait_until_listening([self.smtp_port, self.smtps_port], timeout,
                                                   log=self.log_path)
                return
            except ServerFailed:
                self._process.stop()
                if attempt == 2 or "Address already in use" not in "\n".join(self.log_lines()[-20:]):
                    raise
                self.smtp_port, self.smtps_port = free_ports(2)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def remove(self) -> None:
        """Stop and delete the instance folder (config, queue, log)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def set_lmtp_port(self, port: int) -> None:
        """Point the relay domains at another LMTP port (rewrites the config, then reloads)."""
        self.lmtp_port = port
        self._write_config()
        if self.running:
            self.postfix("reload")

    def _write_config(self) -> None:
        postfix = pwd.getpwnam("postfix")
        self.config_dir.mkdir(exist_ok=True)
        (self.root / "queue").mkdir(exist_ok=True)  # root-owned; start-fg creates the rest
        data = self.root / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        os.chown(data, postfix.pw_uid, postfix.pw_gid)  # master.lock lives here, as user postfix
        target = f"lmtp:inet:{HOST}:{self.lmtp_port}"
        main_cf = _MAIN_CF.format(
            root=self.root, domains=", ".join(self.domains) or "",
            transports=" ".join(f"{d}={target}" for d in self.domains),
            cert=self.tls.cert, key=self.tls.key)
        main_cf += "".join(f"{name} = {value}\n" for name, value in self.settings.items())
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(
            _MASTER_CF.format(host=HOST, smtp=self.smtp_port, smtps=self.smtps_port))
        # Postfix will not read a config file changed within the last second (it might be
        # half-written) and polls until it is older: that costs 2 s per start. Backdate them.
        old = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_dir / name, (old, old))

    def postfix(self, *args: str) -> str:
        """Run the `postfix` command for this instance, e.g. postfix("reload")."""
        return self._run([self.binary, "-c", str(self.config_dir), *args])

    def _run(self, argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    # -- mail ------------------------------------------------------------------------------

    def send(self, mail_from: str, rcpt_to: str | list[str], raw: bytes) -> str:
        """Submit `raw` over SMTP and return the queue id Postfix gave it."""
        recipients = [rcpt_to] if isinstance(rcpt_to, str) else list(rcpt_to)
        with smtplib.SMTP(self.host, self.smtp_port, timeout=10) as smtp:
            smtp.ehlo("test-client.switchboard.test")
            code, answer = smtp.mail(mail_from)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, answer, mail_from)
            for recipient in recipients:
                code, answer = smtp.rcpt(recipient)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({recipient: (code, answer)})
            code, answer = smtp.data(raw)
            if code != 250:
                raise smtplib.SMTPDataError(code, answer)
        match = re.search(rb"queued as (\S+)", answer)
        return match.group(1).decode() if match else ""

    def reset(self) -> None:
        """Delete every queued message and forget earlier outcomes: a clean start for the next test
        when one instance serves a whole session."""
        if self.running:
            self._run(["postsuper", "-c", str(self.config_dir), "-d", "ALL"])
        self._log_mark = len(self.log_lines())

    def flush(self, timeout: float = 10.0) -> None:
        """Retry every deferred message now (`postqueue -f`), as an operator would.

        Returns once each message that was deferred has had its new attempt logged (sent,
        deferred again or bounced): postqueue itself returns before the queue manager acts.
        """
        deadline = time.monotonic() + timeout
        # A message whose attempt just failed is still in "active" until the queue manager moves
        # it to "deferred"; a flush before that would miss it. Let current attempts finish first.
        while self.queue_ids(("maildrop", "incoming", "active")) and time.monotonic() < deadline:
            time.sleep(0.01)
        deferred = self.queue_ids(("deferred",))
        attempts_before = {qid: self._attempts(qid) for qid in deferred}
        self._run(["postqueue", "-c", str(self.config_dir), "-f"])
        while any(self._attempts(qid) == n for qid, n in attempts_before.items()):
            if time.monotonic() > deadline:
                raise AssertionError(f"no new delivery attempt within {timeout}s after flush\n"
                                     + self._tail())
            time.sleep(0.01)

    def _attempts(self, queue_id: str) -> int:
        return sum(1 for d in self.deliveries() if d.queue_id == queue_id)

    def queue_ids(self, queues: tuple[str, ...] = _QUEUES) -> list[str]:
        """Ids of the messages still queued (waiting, being delivered, or deferred)."""
        ids = []
        for queue in queues:
            base = self.root / "queue" / queue
            if base.is_dir():
                ids += [p.name for p in base.rglob("*") if p.is_file()]
        return sorted(ids)

    def queue_empty(self) -> bool:
        return not self.queue_ids()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []

    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt in the log, oldest first."""
        found = []
        for line in self.log_lines():
            match = _DELIVERY.search(line)
            if match:
                found.append(Delivery(**match.groupdict()))
        return found

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> str:
        """Wait until a log line matches the regular expression `pattern`; return that line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if regex.search(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no Postfix log line matched {pattern!r} within {timeout}s\n"
                                     + self._tail())
            time.sleep(0.02)

    def wait_until_delivered(self, timeout: float = 10.0) -> list[Delivery]:
        """Wait until the queue is empty and every attempt since the last call ended in "sent".

        Returns those deliveries. Fails at once, without waiting out `timeout`, when a message
        sits in the deferred queue (only flush() would retry it) or when one bounced.
        """
        deadline = time.monotonic() + timeout
        while True:
            waiting = self.queue_ids(("maildrop", "incoming", "active"))
            deferred = self.queue_ids(("deferred",))
            if not waiting and deferred:
                time.sleep(0.05)  # let postlogd write the deferral line we quote
                raise AssertionError(f"mail deferred, not delivered: {self._outcomes()}\n"
                                     + self._tail())
            if not waiting and not deferred:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"queue not empty after {timeout}s: {waiting + deferred}\n"
                                     + self._tail())
            time.sleep(0.01)
        # The queue file goes after the "status=sent" line is handed to postlogd; give it a moment.
        while True:
            outcomes = self._outcomes()
            if all(d.status == "sent" for d in outcomes) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        failed = [d for d in outcomes if d.status != "sent"]
        if failed:
            raise AssertionError(f"not delivered: {failed}\n" + self._tail())
        self._log_mark = len(self.log_lines())
        return outcomes

    def _outcomes(self) -> list[Delivery]:
        """The latest attempt per (message, recipient) logged since the last wait_until_delivered."""
        latest: dict[tuple[str, str], Delivery] = {}
        for line in self.log_lines()[self._log_mark:]:
            match = _DELIVERY.search(line)
            if match:
                delivery = Delivery(**match.groupdict())
                latest[(delivery.queue_id, delivery.recipient)] = delivery
        return list(latest.values())

    def _tail(self, lines: int = 25) -> str:
        return f"--- {self.log_path} (last {lines} lines)\n" + "\n".join(self.log_lines()[-lines:])
