"""A stand-in for Microsoft Graph's mail API, over HTTPS on loopback with the session's
throwaway CA. No Graph server can run here (Graph is Microsoft's cloud service, with no
server to install), so the tests talk to this one; it checks every bearer token with the
tests' OAuth2 server (tests/servers/oauth2.py) and keeps mailboxes in memory.

The requests and answers follow Microsoft's Graph v1.0 API reference, page by page:
- "message: delta": GET /users/{id}/mailFolders/{id}/messages/delta, pages of `value` with
  `@odata.nextLink` ($skiptoken) until the last, which carries `@odata.deltaLink`
  ($deltatoken); a later round from the delta link returns what changed since (new mail,
  isRead changes) and `@removed` entries for what left the folder; `Prefer:
  odata.maxpagesize=N` sets the page size (answered with Preference-Applied); a delta token
  the service no longer knows is HTTP 410 Gone with code `syncStateNotFound`.
- "Get message" (Get MIME content): GET /users/{id}/messages/{id}/$value, the MIME bytes.
- "message: move": POST /users/{id}/messages/{id}/move with {"destinationId"}, 201 and the
  message in its new folder, under a new id.
- "Update message": PATCH /users/{id}/messages/{id} with {"isRead": true}, 200 and the message.
- "Delete message": DELETE /users/{id}/messages/{id}, 204 (the message goes to Deleted Items).
- "user: sendMail": POST /users/{id}/sendMail, Content-Type text/plain, the MIME message
  base64-encoded; 202 Accepted with no body; saved in Sent Items; malformed base64 is 400
  ErrorMimeContentInvalidBase64String.
- "List mailFolders", "List childFolders" ($filter=displayName eq '...'), "Create MailFolder",
  "Create child folder" (201, 409 ErrorFolderExists); "List messages" in a folder with
  $filter=internetMessageId eq '...'.
- "Microsoft Graph throttling guidance": 429 Too Many Requests with Retry-After in seconds
  (and 503 Service Unavailable with Retry-After).
- "Microsoft Graph error responses and resource types": {"error": {"code", "message"}};
  401 InvalidAuthenticationToken for a token Graph does not accept.

Faults are scheduled per operation (`fail(op, status, ...)`), optionally after doing the
work (`accept=True`: Graph took a sendMail and the answer was lost to a 5xx)."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from flask import Flask, Response, jsonify, request

from .https import HttpsApp
from .oauth2 import OAuth2Server
from .process import HOST, free_ports
from .tls import TlsFiles

WELL_KNOWN = ("inbox", "sentitems", "deleteditems", "drafts", "archive", "junkemail")
_FILTER = re.compile(r"^\s*(displayName|internetMessageId) eq '((?:[^']|'')*)'\s*$")


class _Missing(Exception):
    """No such folder or message: answered 404 ErrorItemNotFound."""


@dataclass
class Message:
    id: str
    folder: str  # folder id
    mime: bytes
    is_read: bool = False

    @property
    def subject(self) -> str:
        return str(BytesHeaderParser().parsebytes(self.mime).get("Subject", ""))

    @property
    def internet_message_id(self) -> str:
        return " ".join(str(BytesHeaderParser().parsebytes(self.mime).get("Message-ID", "")).split())

    def resource(self) -> dict:
        return {"@odata.type": "#microsoft.graph.message", "id": self.id, "isRead": self.is_read,
                "subject": self.subject, "parentFolderId": self.folder,
                "internetMessageId": self.internet_message_id}


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None  # None: a top-level folder (under msgfolderroot)
    well_known: str | None = None


@dataclass
class Mailbox:
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    # per folder id: (sequence number, message id, removed, what delta shows of it then)
    events: dict[str, list[tuple[int, str, bool, dict]]] = field(default_factory=dict)
    sent: list[bytes] = field(default_factory=list)  # what sendMail took, in order


@dataclass
class Fault:
    op: str  # delta, value, move, patch, delete, sendMail, sentItems, folders
    status: int
    retry_after: str | None = None
    accept: bool = False  # do the work, then answer `status` (the answer lost after the fact)


@dataclass
class GraphServer:
    tls: TlsFiles
    provider: OAuth2Server
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    delay: dict[str, float] = field(default_factory=dict)  # op -> seconds before answering
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (op, method, status)
    chunked_values: bool = False  # $value without Content-Length (read until the end)
    refuse_tokens: bool = False  # every token answered 401, as after an admin revoked consent
    link_host: str | None = None  # paging and delta links to this host instead (a client must not follow)
    default_page_size: int = 10

    def __post_init__(self):
        self.port = free_ports(1)[0]
        self.lock = threading.RLock()
        self.seq = 0
        self.forgotten_before = 0  # delta tokens at or below this: 410 syncStateNotFound
        self.app = self._make_app()
        self._https = HttpsApp(self.app, self.tls, self.port)

    # -- what tests call ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}/v1.0"

    def add_mailbox(self, user: str) -> Mailbox:
        with self.lock:
            box = Mailbox()
            for name in WELL_KNOWN:
                folder = Folder(self._new_id("AQMk"), name.capitalize() if name == "inbox" else name, None, name)
                box.folders[folder.id] = folder
                box.events[folder.id] = []
            self.mailboxes[user.lower()] = box
            return box

    def append(self, user: str, mime: bytes, folder: str = "inbox", *, is_read: bool = False) -> str:
        with self.lock:
            box = self.mailboxes[user.lower()]
            message = Message(self._new_id("AAMkAD"), self._folder(box, folder, by_name=True).id, mime, is_read)
            box.messages[message.id] = message
            self._event(box, message)
            return message.id

    def add_folder(self, user: str, name: str, *, parent: str | None = None) -> str:
        with self.lock:
            box = self.mailboxes[user.lower()]
            parent_id = self._folder(box, parent, by_name=True).id if parent else None
            folder = Folder(self._new_id("AQMk"), name, parent_id)
            box.folders[folder.id] = folder
            box.events[folder.id] = []
            return folder.id

    def messages(self, user: str, folder: str = "inbox") -> list[Message]:
        with self.lock:
            box = self.mailboxes[user.lower()]
            found = self._folder(box, folder, by_name=True)
            if found is None:
                return []
            return [m for m in box.messages.values() if m.folder == found.id]

    def sent(self, user: str) -> list[bytes]:
        with self.lock:
            return list(self.mailboxes[user.lower()].sent)

    def fail(self, op: str, status: int, *, retry_after: str | None = None, accept: bool = False,
             times: int = 1) -> None:
        with self.lock:
            self.faults.extend(Fault(op, status, retry_after, accept) for _ in range(times))

    def count(self, op: str, method: str | None = None, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for o, m, s in self.log if o == op and (method is None or m == method)
                       and (status is None or s == status))

    def forget_delta_tokens(self) -> None:
        """Every delta and skip token issued so far answers 410 (Graph's sync state expired)."""
        with self.lock:
            self.forgotten_before = self.seq + 1

    def start(self) -> None:
        self._https.start()

    def stop(self) -> None:
        self._https.stop()

    # -- state ----------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        # Graph's ids are URL-safe base64 and may end in '=': clients must quote them in paths.
        return f"{prefix}{secrets.token_urlsafe(18)}="

    def _event(self, box: Mailbox, message: Message, *, removed_from: str | None = None) -> None:
        self.seq += 1
        if removed_from is not None:
            box.events[removed_from].append((self.seq, message.id, True,
                                             {"id": message.id, "@removed": {"reason": "deleted"}}))
        else:
            shown = message.resource()
            shown.pop("parentFolderId")
            box.events[message.folder].append((self.seq, message.id, False, shown))

    def _folder(self, box: Mailbox, key: str, *, by_name: bool = False) -> Folder | None:
        wanted = key.lower()
        for folder in box.folders.values():
            if folder.id == key or folder.well_known == wanted:
                return folder
        if by_name:
            return next((f for f in box.folders.values() if f.name == key), None)
        return None

    def _move(self, box: Mailbox, message: Message, destination: Folder) -> Message:
        del box.messages[message.id]
        self._event(box, message, removed_from=message.folder)
        moved = Message(self._new_id("AAMkAD"), destination.id, message.mime, message.is_read)
        box.messages[moved.id] = moved
        self._event(box, moved)
        return moved

    # -- the endpoints --------------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask("test-graph-server")
        server = self

        def error(status: int, code: str, message: str, headers: dict | None = None):
            response = jsonify(error={"code": code, "message": message})
            response.status_code = status
            for name, value in (headers or {}).items():
                response.headers[name] = value
            return response

        def answered(op: str):
            """Token check, scheduled faults and delays; None to go on, else the answer."""
            if op in server.delay:
                time.sleep(server.delay[op])
            auth = request.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            with server.provider.lock:
                found = server.provider.access_tokens.get(token)
            if server.refuse_tokens or found is None or found[0].revoked or found[1] < time.time():
                return error(401, "InvalidAuthenticationToken", "Access token is empty, expired or invalid."), None
            fault = next((f for f in server.faults if f.op == op), None)
            if fault is not None:
                server.faults.remove(fault)
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                code = {429: "TooManyRequests", 503: "ServiceNotAvailable"}.get(fault.status, "UnknownError")
                answer = error(fault.status, code, "The test server was told to fail this request.", headers)
                return (None, answer) if fault.accept else (answer, None)
            return None, None

        def mailbox(user: str) -> Mailbox | None:
            return server.mailboxes.get(user.lower())

        def logged(op: str):
            def wrap(view):
                def handler(*args, **kwargs):
                    with server.lock:
                        refused, after = answered(op)
                        if refused is not None:
                            answer = refused
                        elif mailbox(kwargs["user"]) is None:
                            answer = error(404, "ErrorInvalidUser", "The requested user is invalid.")
                        else:
                            try:
                                answer = view(*args, **kwargs)
                            except _Missing:
                                answer = error(404, "ErrorItemNotFound",
                                               "The specified object was not found in the store.")
                            if after is not None and (answer.status_code < 300):
                                answer = after  # done, then the answer lost to a server error
                        server.log.append((op, request.method, answer.status_code))
                        return answer
                handler.__name__ = f"{op}_{view.__name__}"
                return handler
            return wrap

        def filtered(kind: str) -> str | None:
            text = request.args.get("$filter")
            if text is None:
                return None
            match = _FILTER.match(text)
            if match is None or match.group(1) != kind:
                return "\0unsupported"
            return match.group(2).replace("''", "'")

        def folder_or_404(box: Mailbox, key: str) -> Folder:
            found = server._folder(box, key)
            if found is None:
                raise _Missing
            return found

        def folder_json(folder: Folder) -> dict:
            return {"id": folder.id, "displayName": folder.name, "parentFolderId": folder.parent}

        def list_folders(user: str, parent: str | None):
            box = mailbox(user)
            parent = folder_or_404(box, parent).id if parent is not None else None
            name = filtered("displayName")
            if name == "\0unsupported":
                return error(400, "ErrorInvalidUrlQueryFilter", "The query filter is not supported.")
            folders = [f for f in box.folders.values() if f.parent == parent and (name is None or f.name == name)]
            return jsonify(value=[folder_json(f) for f in folders])

        def create_folder(user: str, parent: str | None):
            box = mailbox(user)
            parent = folder_or_404(box, parent).id if parent is not None else None
            name = (request.get_json(silent=True) or {}).get("displayName")
            if not name:
                return error(400, "ErrorInvalidRequest", "displayName is required.")
            if any(f.parent == parent and f.name == name for f in box.folders.values()):
                return error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
            folder = Folder(server._new_id("AQMk"), name, parent)
            box.folders[folder.id] = folder
            box.events[folder.id] = []
            response = jsonify(folder_json(folder))
            response.status_code = 201
            return response

        @app.get("/v1.0/users/<user>/mailFolders")
        @logged("folders")
        def top_folders(user):
            return list_folders(user, None)

        @app.post("/v1.0/users/<user>/mailFolders")
        @logged("folders")
        def new_top_folder(user):
            return create_folder(user, None)

        @app.get("/v1.0/users/<user>/mailFolders/<folder>/childFolders")
        @logged("folders")
        def child_folders(user, folder):
            return list_folders(user, folder)

        @app.post("/v1.0/users/<user>/mailFolders/<folder>/childFolders")
        @logged("folders")
        def new_child_folder(user, folder):
            return create_folder(user, folder)

        @app.get("/v1.0/users/<user>/mailFolders/<folder>/messages/delta")
        @logged("delta")
        def delta(user, folder):
            box = mailbox(user)
            found = folder_or_404(box, folder)
            skip, token = request.args.get("$skiptoken"), request.args.get("$deltatoken")
            try:
                if skip is not None:
                    since, upto, offset = (int(p) for p in base64.urlsafe_b64decode(skip).decode().split(":"))
                    if upto < server.forgotten_before:
                        raise LookupError
                elif token is not None:
                    since, upto, offset = int(token), server.seq, 0
                    if since < server.forgotten_before:
                        raise LookupError
                else:
                    since, upto, offset = 0, server.seq, 0
            except (ValueError, binascii.Error, LookupError):
                return error(410, "syncStateNotFound", "The sync state is not found or has expired; "
                                                       "start again without a token.")
            latest: dict[str, tuple[int, dict]] = {}
            for seq, message_id, _, shown in box.events[found.id]:
                if since < seq <= upto:
                    latest[message_id] = (seq, shown)
            items = [shown for _, shown in sorted(latest.values(), key=lambda pair: pair[0])]
            size = server.default_page_size
            match = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("Prefer", ""))
            if match:
                size = max(1, int(match.group(1)))
            page = items[offset:offset + size]
            base = f"https://{server.link_host}/v1.0" if server.link_host else server.base_url
            link = f"{base}/users/{user}/mailFolders/{folder}/messages/delta"
            body = {"@odata.context": f"{server.base_url}/$metadata#Collection(message)", "value": page}
            if offset + size < len(items):
                state = base64.urlsafe_b64encode(f"{since}:{upto}:{offset + size}".encode()).decode()
                body["@odata.nextLink"] = f"{link}?$skiptoken={state}"
            else:
                body["@odata.deltaLink"] = f"{link}?$deltatoken={upto}"
            response = jsonify(body)
            if match:
                response.headers["Preference-Applied"] = f"odata.maxpagesize={size}"
            return response

        @app.get("/v1.0/users/<user>/mailFolders/<folder>/messages")
        @logged("sentItems")
        def folder_messages(user, folder):
            box = mailbox(user)
            found = folder_or_404(box, folder)
            wanted = filtered("internetMessageId")
            if wanted == "\0unsupported":
                return error(400, "ErrorInvalidUrlQueryFilter", "The query filter is not supported.")
            return jsonify(value=[{"id": m.id} for m in box.messages.values() if m.folder == found.id
                                  and (wanted is None or m.internet_message_id == wanted)])

        def message_or_404(user, message_id) -> Message:
            message = mailbox(user).messages.get(message_id)
            if message is None:
                raise _Missing
            return message

        @app.get("/v1.0/users/<user>/messages/<message_id>/$value")
        @logged("value")
        def value(user, message_id):
            message = message_or_404(user, message_id)
            if server.chunked_values:
                data = message.mime
                return Response((data[i:i + 4096] for i in range(0, len(data), 4096)), mimetype="text/plain")
            return Response(message.mime, mimetype="text/plain")

        @app.post("/v1.0/users/<user>/messages/<message_id>/move")
        @logged("move")
        def move(user, message_id):
            box = mailbox(user)
            message = message_or_404(user, message_id)
            destination = server._folder(box, str((request.get_json(silent=True) or {}).get("destinationId", "")))
            if destination is None:
                return error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
            moved = server._move(box, message, destination)
            response = jsonify(moved.resource())
            response.status_code = 201
            return response

        @app.patch("/v1.0/users/<user>/messages/<message_id>")
        @logged("patch")
        def update(user, message_id):
            box = mailbox(user)
            message = message_or_404(user, message_id)
            changes = request.get_json(silent=True) or {}
            if "isRead" in changes:
                message.is_read = bool(changes["isRead"])
                server._event(box, message)
            return jsonify(message.resource())

        @app.delete("/v1.0/users/<user>/messages/<message_id>")
        @logged("delete")
        def delete(user, message_id):
            box = mailbox(user)
            message = message_or_404(user, message_id)
            server._move(box, message, server._folder(box, "deleteditems"))
            return Response(status=204)

        @app.post("/v1.0/users/<user>/sendMail")
        @logged("sendMail")
        def send_mail(user):
            box = mailbox(user)
            if request.mimetype != "text/plain":
                return error(400, "ErrorInvalidRequest", "Use text/plain for MIME content.")
            try:
                mime = base64.b64decode(request.get_data(), validate=True)
            except (binascii.Error, ValueError):
                return error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
            if not mime.strip():
                return error(400, "ErrorMimeContentInvalid", "The MIME content is empty.")
            box.sent.append(mime)
            sent = Message(server._new_id("AAMkAD"), server._folder(box, "sentitems").id, mime, True)
            box.messages[sent.id] = sent
            server._event(box, sent)
            return Response(status=202)

        return app
