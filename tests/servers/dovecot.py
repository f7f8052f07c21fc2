"""A real Dovecot (IMAP, IMAPS, POP3, POP3S) on loopback, configured in its own temporary folder.

Users come from a passwd-file that can change while Dovecot runs; mail is Maildir owned by the
system user `mail`, which tests may fill and read directly for speed.
"""

from __future__ import annotations

import base64
import itertools
import math
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from imapclient import imap_utf7

from .process import HOST, ServerFailed, Supervised, free_ports
from .tls import TlsFiles

INSTALL_HINT = "apt-get install dovecot-imapd dovecot-pop3d (or run .ci/install-services)"

_CONFIG = """\
# Written by tests/servers/dovecot.py for one test run; never /etc/dovecot.
protocols = imap pop3
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = {instance}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
# Plain ports offer STARTTLS but do not insist on it: tests cover plaintext logins too.
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%Lu
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
# Login processes refuse to run as root; without chroot they need no prepared jail.
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
# Login processes: one long-lived process per protocol, started with Dovecot ("high-performance
# mode"). Spawned per connection instead, one still reading its config when Dovecot is told to
# stop blocks the shutdown for good.
service imap-login {{
  chroot =
  service_count = 0
  process_min_avail = 1
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  service_count = 0
  process_min_avail = 1
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
# Tests log in many times a second from one address, some with wrong passwords on purpose:
# no failure delay (a failed login still takes up to 0.5 s: Dovecot sends failures on a timer),
# and no anvil penalty, which would delay every later login from 127.0.0.1 by 2-15 s.
auth_failure_delay = 0
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
pop3_uidl_format = %08Xu%08Xv
# No statistics: a process stopped while still greeting the stats service hangs 5 s on it.
stats_writer_socket_path =
mail_fsync = never
"""


@dataclass(frozen=True)
class DovecotPorts:
    imap: int
    imaps: int
    pop3: int
    pop3s: int


class Dovecot:
    """A handle on one Dovecot instance; see the module docstring. Addresses are lower-cased,
    as Dovecot's default auth_username_format does at login."""

    host = HOST

    def __init__(self, binary: str, tls: TlsFiles, root: Path | None = None, *,
                 oauth2_introspection_url: str | None = None):
        self.binary = binary
        self.tls = tls
        # Set: logins by XOAUTH2/OAUTHBEARER are checked by POSTing the token to this URL
        # (Dovecot's oauth2 passdb, RFC 7662 introspection), over TLS trusting `tls.ca`.
        self.oauth2_introspection_url = oauth2_introspection_url
        # Not pytest's tmp_path: its 0700 parents would lock out the mail and dovenull users,
        # and its long paths would push Dovecot's unix sockets past the 108-byte limit.
        self.root = Path(root or tempfile.mkdtemp(prefix="sb-dovecot-"))
        os.chmod(self.root, 0o755)
        mail = pwd.getpwnam("mail")
        self._uid, self._gid = mail.pw_uid, mail.pw_gid
        self._users_dir = self.root / "users"
        self._users_dir.mkdir(exist_ok=True)
        (self.root / "mail").mkdir(exist_ok=True)
        os.chown(self.root / "mail", self._uid, self._gid)
        self.ports = DovecotPorts(*free_ports(4))
        self._serial = itertools.count()
        self._process: Supervised | None = None

    @property
    def ca_path(self) -> Path:
        return self.tls.ca

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def sasl_socket(self) -> Path:
        """Dovecot's auth socket for Postfix (only with oauth2_introspection_url)."""
        return self.root / "run" / "auth-client-postfix"

    # -- running ---------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        if self._process is not None and self._process.running:
            return
        for attempt in range(3):
            self._write_config()
            # Dovecot's own shutdown takes ~1.1 s; a login process caught mid-startup can hang
            # it, so whatever is left after 2 s is killed (nothing of a test's mail is at stake).
            self._process = Supervised([self.binary, "-F", "-c", str(self.config_path)],
                                       output_path=self.root / "dovecot.out", grace=2.0,
                                       cwd=self.root)
            self._process.start()
            try:
                # The greeting comes only once the login process is talking to auth.
                self._process.wait_until_listening(
                    list(vars(self.ports).values()), timeout, log=self.log_path,
                    greetings={self.ports.imap: b"* OK", self.ports.pop3: b"+OK"})
                return
            except ServerFailed:
                self._process.stop()
                # Another worker may have taken a port since it was picked: pick again.
                if attempt == 2 or "Address already in use" not in self._log_tail():
                    raise
                self.ports = DovecotPorts(*free_ports(4))

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def remove(self) -> None:
        """Stop and delete the whole instance folder (config, mail, logs)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []

    def _log_tail(self) -> str:
        return "\n".join(self.log_lines()[-30:])

    def _write_config(self) -> None:
        config = _CONFIG.format(
            host=HOST, root=self.root, instance=self.root.name, cert=self.tls.cert, key=self.tls.key,
            uid=self._uid, gid=self._gid, **vars(self.ports))
        if self.oauth2_introspection_url:
            # Dovecot's auth process runs as its own user: it cannot read the CA where pytest keeps it.
            ca = self.root / "oauth2-ca.pem"
            shutil.copyfile(self.tls.ca, ca)
            os.chmod(ca, 0o644)
            (self.root / "oauth2.conf.ext").write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth2_introspection_url}\n"
                "force_introspection = yes\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
                f"tls_ca_cert_file = {ca}\n")
            config = config.replace("auth_mechanisms = plain login\n",
                                    "auth_mechanisms = plain login xoauth2 oauthbearer\n")
            # Postfix's SASL (smtpd_sasl_type = dovecot) asks Dovecot's auth over this socket.
            config += "service auth {\n  unix_listener auth-client-postfix {\n    mode = 0666\n  }\n}\n"
            config = config.replace("passdb {\n  driver = passwd-file\n",
                                    "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                                    f"  args = {self.root}/oauth2.conf.ext\n}}\n"
                                    "passdb {\n  driver = passwd-file\n")
        self.config_path.write_text(config)

    # -- users -----------------------------------------------------------------------------

    def add_user(self, email: str, password: str) -> None:
        """Create the account, or change its password; either takes effect at the next login.

        Changing an existing password waits for the next whole second (at most 1 s): Dovecot
        re-reads a passwd-file at most once a second.
        """
        email = email.lower()
        if not email or any(c in email for c in ":/\n\r\0"):
            raise ValueError(f"not usable as a Dovecot user name: {email!r}")
        path = self._users_dir / email
        existed = path.exists()
        secret = base64.b64encode(password.encode()).decode("ascii")
        # One file per user: a new user is seen at once, where a change to one shared file could
        # go unnoticed for up to a second.
        staging = path.with_name(f".{email}.new")
        staging.write_text(f"{email}:{{PLAIN.BASE64}}{secret}\n")
        os.replace(staging, path)
        if existed:
            now = time.time()
            os.utime(path, (now + 1, now + 1))  # a changed mtime even when the size is unchanged
            time.sleep(math.ceil(now) - now + 0.01)

    # -- mail ------------------------------------------------------------------------------

    def _maildir(self, email: str, folder: str = "INBOX") -> Path:
        home = self.root / "mail" / email.lower()
        if folder.upper() == "INBOX":
            return home
        # Maildir++ layout: folder "Archive.2024" lives in ".Archive.2024", names in modified UTF-7.
        return home / ("." + imap_utf7.encode(folder).decode("ascii"))

    def _make_maildir(self, email: str, folder: str) -> Path:
        path = self._maildir(email, folder)
        home = self._maildir(email)
        for directory in (home, path, path / "cur", path / "new", path / "tmp"):
            if not directory.exists():
                directory.mkdir(mode=0o700)
                os.chown(directory, self._uid, self._gid)
        if path != home and not (path / "maildirfolder").exists():
            (path / "maildirfolder").touch()
            os.chown(path / "maildirfolder", self._uid, self._gid)
        return path

    def append(self, email: str, raw: bytes, folder: str = "INBOX", *, seen: bool = False) -> None:
        """Deliver `raw` into the mailbox as an MDA would: a new (unseen, recent) Maildir file.

        Dovecot notices the file at the next folder sync, even in an open IMAP session.
        """
        path = self._make_maildir(email, folder)
        now = time.time()
        name = (f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._serial)}"
                f".{socket.gethostname()},S={len(raw)}")
        staging = path / "tmp" / name
        staging.write_bytes(raw)
        os.chown(staging, self._uid, self._gid)
        os.chmod(staging, 0o600)
        if seen:
            os.rename(staging, path / "cur" / (name + ":2,S"))
        else:
            os.rename(staging, path / "new" / name)

    def messages(self, email: str, folder: str = "INBOX") -> list[bytes]:
        """The raw messages in the folder, in IMAP order (by UID; mail Dovecot has not seen yet last).

        With CRLF line ends, as IMAP serves them: Dovecot itself stores mail with bare LF.
        """
        path = self._maildir(email, folder)
        files = [f for sub in ("cur", "new") if (path / sub).is_dir() for f in (path / sub).iterdir()]
        uids = self._uids(path)
        # Mail Dovecot has not numbered yet goes last, in delivery order: names start with
        # "<seconds>.M<microseconds>P<pid>Q<counter>", compared as numbers, not as text.
        files.sort(key=lambda f: (uids.get(f.name.split(":")[0], float("inf")),
                                  [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f.name)]))
        return [f.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for f in files]

    @staticmethod
    def _uids(path: Path) -> dict[str, int]:
        # dovecot-uidlist: a header line, then "UID [extensions] :basename" per message.
        uidlist = path / "dovecot-uidlist"
        if not uidlist.exists():
            return {}
        uids = {}
        for line in uidlist.read_text(errors="replace").splitlines()[1:]:
            head, _, base = line.partition(":")
            if base and head.split():
                uids[base.split(":")[0]] = int(head.split()[0])
        return uids

    def folders(self, email: str) -> list[str]:
        """IMAP names of the account's folders ("." separated), INBOX first, then sorted.

        Only folders that exist: for "Desk.Done", IMAP LIST also shows a \\Noselect "Desk".
        """
        home = self._maildir(email)
        names = []
        if home.is_dir():
            names = sorted(imap_utf7.decode(p.name[1:].encode("ascii")) for p in home.iterdir()
                           if p.is_dir() and p.name.startswith(".") and p.name not in (".", ".."))
        return ["INBOX", *names]

    def clear(self, email: str) -> None:
        """Delete every folder and message of the account (its password stays).

        Meant for between tests: a client still logged in would see its mailbox vanish.
        """
        shutil.rmtree(self._maildir(email), ignore_errors=True)

    def doveadm(self, *args: str) -> subprocess.CompletedProcess:
        """Run `doveadm` against this instance, e.g. doveadm("mailbox", "list", "-u", email)."""
        return subprocess.run(["doveadm", "-c", str(self.config_path), *args],
                              capture_output=True, text=True, check=True)
