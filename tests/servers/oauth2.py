"""A small OAuth2 authorization server of the tests' own, over HTTPS on loopback with the
session's throwaway CA: it issues access tokens (client credentials; refresh tokens, rotated
on every use), revokes grants, and answers Dovecot's token introspection (RFC 7662), so the
desk's OAuth2 sign-in runs for real against a real Dovecot.

Shapes follow RFC 6749 (token endpoint: form-encoded request, JSON answer, `invalid_grant`
errors with HTTP 400), RFC 7662 (introspection) and, for Microsoft's client library, the
OpenID discovery document MSAL reads before its first token request."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field

from flask import Flask, jsonify, redirect, request

from .https import HttpsApp
from .process import HOST, free_ports
from .tls import TlsFiles


@dataclass
class Grant:
    client_id: str
    username: str
    refresh_token: str | None = None
    revoked: bool = False


@dataclass
class OAuth2Server:
    tls: TlsFiles
    access_seconds: float = 3600
    rotate_refresh_tokens: bool = True
    clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret
    mailbox_of_client: dict[str, str] = field(default_factory=dict)  # client credentials act for this user
    grants: list[Grant] = field(default_factory=list)
    access_tokens: dict[str, tuple[Grant, float]] = field(default_factory=dict)
    token_requests: int = 0
    introspections: int = 0
    fail_next: list[int] = field(default_factory=list)  # HTTP statuses to answer the next token requests with
    revoked_mailboxes: set[str] = field(default_factory=set)
    codes: dict[str, dict] = field(default_factory=dict)  # authorization code -> what it was issued for
    service_accounts: dict[str, bytes] = field(default_factory=dict)  # client_email -> public key (PEM)
    certificates: dict[str, object] = field(default_factory=dict)  # client_id -> its certificate's public key

    def __post_init__(self):
        self.port = free_ports(1)[0]
        self.lock = threading.Lock()
        self.app = self._make_app()
        self._https = HttpsApp(self.app, self.tls, self.port)

    # -- what tests call ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/token"

    @property
    def introspection_url(self) -> str:
        return f"{self.base_url}/introspect"

    def add_client(self, mailbox: str | None = None) -> tuple[str, str]:
        client_id, secret = f"client-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
        with self.lock:
            self.clients[client_id] = secret
            if mailbox:
                self.mailbox_of_client[client_id] = mailbox
        return client_id, secret

    def add_service_account(self) -> dict:
        """A Google-style service account: its JSON key, as the admin downloads it."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"desk-{secrets.token_hex(4)}@project.iam.gserviceaccount.test"
        with self.lock:
            self.service_accounts[email] = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return {"type": "service_account", "client_email": email, "private_key": private,
                "private_key_id": "k1", "client_id": "1234", "token_uri": self.token_endpoint}

    def grant_refresh_token(self, client_id: str, username: str) -> str:
        """As if the user had signed in and consented: a refresh token for them."""
        token = f"rt-{secrets.token_urlsafe(16)}"
        with self.lock:
            self.grants.append(Grant(client_id, username, token))
        return token

    def revoke(self, username: str) -> None:
        """Revoke every grant for the user: its refresh tokens and access tokens stop working,
        and an app acting for that mailbox (client credentials) is refused from now on."""
        with self.lock:
            self.revoked_mailboxes.add(username)
            for grant in self.grants:
                if grant.username == username:
                    grant.revoked = True

    def start(self) -> None:
        self._https.start()

    def stop(self) -> None:
        self._https.stop()

    # -- the endpoints ------------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask("test-oauth2-server")

        def error(code: str, description: str, status: int = 400):
            return jsonify(error=code, error_description=description), status

        @app.post("/token")
        @app.post("/<tenant>/oauth2/v2.0/token")
        def token(tenant=None):
            with self.lock:
                self.token_requests += 1
                if self.fail_next:
                    status = self.fail_next.pop(0)
                    return "busy", status, {"Retry-After": "1"}
                form = request.form
                if form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                    return self._service_account_token(form.get("assertion", ""))
                client_id = form.get("client_id") or (request.authorization.username if request.authorization else None)
                secret = form.get("client_secret") or (request.authorization.password if request.authorization else None)
                if form.get("client_assertion"):  # RFC 7523 section 2.2: a certificate's signed assertion
                    secret = self._client_by_assertion(client_id, form["client_assertion"])
                if client_id not in self.clients or self.clients[client_id] != secret:
                    return error("invalid_client", "unknown client or wrong secret", 401)
                kind = form.get("grant_type")
                if kind == "client_credentials":
                    if self.mailbox_of_client.get(client_id) in self.revoked_mailboxes:
                        return error("unauthorized_client", "the app's access to this mailbox was revoked")
                    grant = Grant(client_id, self.mailbox_of_client.get(client_id, ""))
                    self.grants.append(grant)
                    return jsonify(self._issue(grant, refresh=False))
                if kind == "authorization_code":
                    issued = self.codes.pop(form.get("code", ""), None)
                    verifier = form.get("code_verifier", "")
                    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
                    if issued is None or issued["client_id"] != client_id \
                            or issued["redirect_uri"] != form.get("redirect_uri") \
                            or challenge.decode() != issued["challenge"]:
                        return error("invalid_grant", "unknown code, or the PKCE verifier does not match")
                    grant = Grant(client_id, issued["username"], "pending")
                    self.grants.append(grant)
                    return jsonify(self._issue(grant, refresh=True))
                if kind == "refresh_token":
                    presented = form.get("refresh_token")
                    grant = next((g for g in self.grants if g.refresh_token == presented
                                  and g.client_id == client_id), None)
                    if grant is None or grant.revoked:
                        return error("invalid_grant", "the refresh token is expired, revoked or already used")
                    return jsonify(self._issue(grant, refresh=self.rotate_refresh_tokens))
                return error("unsupported_grant_type", f"grant type {kind!r} is not supported")

        @app.route("/authorize", methods=["GET", "POST"])
        @app.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
        def authorize(tenant=None):
            """A sign-in and consent page (RFC 6749 section 4.1.1, PKCE S256 required)."""
            args = request.values
            if args.get("response_type") != "code" or args.get("code_challenge_method") != "S256" \
                    or args.get("client_id") not in self.clients:
                return "bad authorization request", 400
            if request.method == "GET":
                hidden = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in args.items())
                return (f'<!doctype html><title>Sign in</title><form method="post">{hidden}'
                        '<label>Mailbox <input name="username"></label>'
                        '<button name="decision" value="allow">Allow</button>'
                        '<button name="decision" value="deny">Deny</button></form>')
            target = args["redirect_uri"]
            if args.get("decision") != "allow":
                return redirect(f"{target}?error=access_denied&state={args.get('state', '')}")
            code = secrets.token_urlsafe(16)
            with self.lock:
                self.codes[code] = {"client_id": args["client_id"], "username": args.get("username", ""),
                                    "redirect_uri": target, "challenge": args["code_challenge"]}
            return redirect(f"{target}?code={code}&state={args.get('state', '')}")

        @app.post("/introspect")
        def introspect():
            with self.lock:
                self.introspections += 1
                found = self.access_tokens.get(request.form.get("token", ""))
                if found is None:
                    return jsonify(active="false")
                grant, expires = found
                if grant.revoked or expires < time.time():
                    return jsonify(active="false")
                return jsonify(active="true", username=grant.username)

        @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
        def discovery(tenant):
            base = f"{self.base_url}/{tenant}"
            return jsonify(issuer=f"{base}/v2.0", token_endpoint=f"{base}/oauth2/v2.0/token",
                           authorization_endpoint=f"{base}/oauth2/v2.0/authorize",
                           jwks_uri=f"{base}/discovery/v2.0/keys", response_types_supported=["code"],
                           subject_types_supported=["pairwise"], id_token_signing_alg_values_supported=["RS256"])

        return app

    def add_certificate_client(self, mailbox: str) -> tuple[str, str]:
        """A client that proves itself with a certificate (Microsoft's client-credentials flow
        with a certificate): its id, and one PEM with the private key and the certificate."""
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchboard desk")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                       .serial_number(x509.random_serial_number()).not_valid_before(now)
                       .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        client_id = f"client-{secrets.token_hex(4)}"
        with self.lock:
            self.clients[client_id] = f"certificate:{client_id}"
            self.mailbox_of_client[client_id] = mailbox
            self.certificates[client_id] = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return client_id, pem + certificate.public_bytes(serialization.Encoding.PEM).decode()

    def _client_by_assertion(self, client_id: str | None, assertion: str) -> str | None:
        import jwt

        try:
            claims = jwt.decode(assertion, self.certificates[client_id], algorithms=["PS256", "RS256"],
                                options={"verify_aud": False})
        except (KeyError, jwt.PyJWTError):
            return None
        return self.clients.get(client_id) if claims.get("iss") == client_id == claims.get("sub") else None

    def _service_account_token(self, assertion: str):
        """RFC 7523: a JWT signed by a service account, acting for the user in `sub`
        (Google's domain-wide delegation)."""
        import jwt

        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
            # google-auth names Google's own token endpoint as the audience, wherever it posts.
            claims = jwt.decode(assertion, self.service_accounts[issuer], algorithms=["RS256"],
                                options={"verify_aud": False})
        except (KeyError, jwt.PyJWTError) as exc:
            return jsonify(error="invalid_grant", error_description=f"bad assertion: {exc}"), 400
        if claims.get("sub") in self.revoked_mailboxes:
            return jsonify(error="unauthorized_client", error_description="delegation revoked"), 401
        grant = Grant(issuer, claims.get("sub", ""))
        self.grants.append(grant)
        return jsonify(self._issue(grant, refresh=False))

    def _issue(self, grant: Grant, *, refresh: bool) -> dict:
        access = f"at-{secrets.token_urlsafe(24)}"
        self.access_tokens[access] = (grant, time.time() + self.access_seconds)
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": int(self.access_seconds)}
        if refresh:
            grant.refresh_token = f"rt-{secrets.token_urlsafe(16)}"  # the old one stops working
            answer["refresh_token"] = grant.refresh_token
        return answer
