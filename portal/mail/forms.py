"""Forms on the mail admin pages. Field names are the domain functions'
argument names, so a complaint (`InvalidInput.field`) lands beside its field.
Passwords are write-only: PasswordField never renders a value, and a blank
one keeps the stored password."""

from wtforms import (
    BooleanField,
    EmailField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from portal.forms import CheckboxesField, DeskForm, analyst_choices, group_choices, priority_choices
from switchboard.inbound.models import AfterProcessing, Protocol, Security, UnknownSenders
from switchboard.outbox.catalogue import Recipient
from switchboard.outbox.limits import LIMITS as REPLY_LIMITS
from switchboard.outbox.settings import SWITCH_LABELS, SWITCHES

PEM_MAX = 100_000
TEMPLATE_MAX = 100_000

PROTOCOLS = [
    SelectChoice(Protocol.IMAP.value, "IMAP (the desk reads a mailbox)"),
    SelectChoice(Protocol.POP3.value, "POP3 (the desk reads a mailbox)"),
    SelectChoice(Protocol.LMTP.value, "LMTP (the mail server delivers to the desk)"),
    # Signs in with OAuth2 only: add it with `mail accounts add --protocol graph`, or add it as IMAP
    # first, set its OAuth2 settings, then switch it to Graph here.
    SelectChoice(Protocol.GRAPH.value, "Microsoft Graph (a Microsoft 365 mailbox, OAuth2)"),
]
SECURITY = [
    SelectChoice(Security.TLS.value, "TLS (IMAPS 993, POP3S 995)"),
    SelectChoice(Security.STARTTLS.value, "STARTTLS (143, 110)"),
    SelectChoice(Security.NONE.value, "None (only on a trusted network)"),
]
AFTER = [
    SelectChoice("", "The protocol's default (IMAP: move, POP3: delete)"),
    SelectChoice(AfterProcessing.MOVE.value, "Move to the processed folder (IMAP)"),
    SelectChoice(AfterProcessing.SEEN.value, "Mark as read and keep it"),
    SelectChoice(AfterProcessing.DELETE.value, "Delete it"),
]
UNKNOWN = [
    SelectChoice(UnknownSenders.CREATE.value, "Add them as customers"),
    SelectChoice(UnknownSenders.REJECT.value, "Reject their mail (with a reply saying why)"),
]
SMTP_SECURITY = [
    SelectChoice("starttls", "STARTTLS (usually 587)"),
    SelectChoice("tls", "TLS (usually 465)"),
    SelectChoice("none", "None (only to a relay on this machine or a trusted network)"),
]
RECIPIENT_LABELS = {
    Recipient.CUSTOMER: "Customer",
    Recipient.ASSIGNED_ANALYST: "Assigned analyst",
    Recipient.GROUP_MEMBERS: "Group members",
    Recipient.REQUEST_OWNER: "Request owner",
    Recipient.APPROVER: "Approver",
    Recipient.ESCALATION_RECIPIENTS: "Escalation recipients",
    Recipient.SENDER: "Sender of the incoming mail",
    Recipient.ADMINS: "Admins",
}


def _port():
    return IntegerField("Port", validators=[Optional()], description="Blank: the usual port for the security chosen.")


def _seconds(label, default, description=None):
    return IntegerField(label, default=default, validators=[InputRequired(f"Give the {label.lower()}.")],
                        description=description)


class AccountForm(DeskForm):
    name = StringField("Name", validators=[Length(max=80)], description="For lists and logs, e.g. Support mailbox.")
    protocol = SelectField("Protocol", choices=PROTOCOLS, default=Protocol.IMAP.value)
    addresses = TextAreaField(
        "Addresses (LMTP)", validators=[Length(max=20_000)],
        description="One per line: help@desk.example, or @desk.example for every address of a domain.")
    host = StringField("Host", validators=[Length(max=255)])
    port = _port()
    security = SelectField("Security", choices=SECURITY, default=Security.TLS.value)
    # The mailbox's login, not the admin's own: browsers should not fill it in.
    username = StringField("User name", validators=[Length(max=255)], render_kw={"autocomplete": "off"})
    password = PasswordField("Password", validators=[Length(max=1000)],
                             render_kw={"autocomplete": "new-password"})
    trusted_ca_pem = TextAreaField(
        "Trusted CA (PEM)", validators=[Length(max=PEM_MAX)],
        description="Only for a server with its own certificate authority; blank trusts the system's.")
    folder = StringField("Folder", default="INBOX", validators=[Length(max=255)])
    after_processing = SelectField("After storing a message", choices=AFTER, default="")
    processed_folder = StringField("Processed folder", default="Processed", validators=[Length(max=255)])
    poll_interval_seconds = _seconds("Poll interval (seconds)", 60)
    batch_size = _seconds("Batch size", 100, "Messages fetched and stored together.")
    max_messages_per_session = _seconds("Most messages per poll", 1000)
    timeout_seconds = _seconds("Timeout (seconds)", 30, "Also the limit for Test connection.")
    allow_new_calls = BooleanField("Mail without a reference logs a new call", default=True)
    unknown_senders = SelectField("Senders the desk does not know", choices=UNKNOWN, default=UnknownSenders.CREATE.value)
    default_priority = SelectField("Priority of new calls", default="")
    default_group = SelectField("Group for new calls", default="")
    default_analyst = SelectField("Analyst for new calls", default="")
    use_linked_analyst = BooleanField("Give new calls to the analyst who last worked for the same customer")
    trusted_submission = BooleanField(
        "Trusted submission: the From line of mail arriving here is proof of the sender",
        description="Tick this only if every mail reaching this account has passed authenticated submission "
                    "(your mail server accepts it only from its own users after they log in). Mail here may "
                    "then close, reopen, approve and reject with its sender's rights; anyone who can get a "
                    "mail into this account can act as anyone.")

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_priority.choices = [SelectChoice("", "— the desk's default —")] + priority_choices()
        self.default_group.choices = group_choices()
        self.default_analyst.choices = analyst_choices()
        self.password.description = (
            "Stored encrypted and never shown. Leave blank to keep the stored password." if editing
            else "Stored encrypted and never shown.")


class TestMailForm(DeskForm):
    to = EmailField("Send a test mail to", validators=[InputRequired("Give an address."), Length(max=320)])


class ServerForm(DeskForm):
    name = StringField("Name", validators=[Length(max=80)])
    host = StringField("Host", validators=[Length(max=255)])
    port = _port()
    security = SelectField("Security", choices=SMTP_SECURITY, default="starttls")
    username = StringField("User name", validators=[Length(max=255)], description="Blank: no login.",
                           render_kw={"autocomplete": "off"})
    password = PasswordField("Password", validators=[Length(max=1000)],
                             render_kw={"autocomplete": "new-password"})
    trusted_ca_pem = TextAreaField("Trusted CA (PEM)", validators=[Length(max=PEM_MAX)],
                                   description="Only for a server with its own certificate authority.")
    from_address = EmailField("From address", validators=[Length(max=320)],
                              description="The desk's address: mail goes out from it and replies come back to it.")
    from_name = StringField("From name", validators=[Length(max=200)], description="Blank: the desk's name.")
    priority = IntegerField("Order", default=10, validators=[InputRequired("Give the order.")],
                            description="Lower goes first; the next server is tried when one cannot be reached.")
    timeout_seconds = _seconds("Timeout (seconds)", 30)

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.password.description = (
            "Stored encrypted and never shown. Leave blank to keep the stored password." if editing
            else "Stored encrypted and never shown.")


class TemplateForm(DeskForm):
    subject = StringField("Subject", validators=[Length(max=TEMPLATE_MAX)])
    text = TextAreaField("Text", validators=[Length(max=TEMPLATE_MAX)])
    html = TextAreaField("HTML (optional)", validators=[Length(max=TEMPLATE_MAX)],
                         description="Blank: the mail is plain text only.")
    from_address = EmailField("From address (optional)", validators=[Length(max=320)],
                              description="Blank: the outgoing server's.")
    from_name = StringField("From name (optional)", validators=[Length(max=200)])
    signature = TextAreaField("Signature (optional)", validators=[Length(max=2_000)],
                              description="Added under the text of every mail of this type.")


class SwitchesForm(DeskForm):
    """The desk-wide switches, one checkbox each (built from settings.SWITCHES)."""


for _name in SWITCHES:
    setattr(SwitchesForm, _name, BooleanField(SWITCH_LABELS[_name]))


class RuleForm(DeskForm):
    """One message type's row on the notifications page (prefix t<number>)."""

    enabled = BooleanField("Send")
    recipients = CheckboxesField(
        "Recipients", choices=[SelectChoice(r.value, RECIPIENT_LABELS[r]) for r in Recipient])


class ReplyLimitsForm(DeskForm):
    """The limits on automatic replies, on the notifications page (prefix limits; built from
    outbox.limits.LIMITS, which also checks the values)."""


for _limit in REPLY_LIMITS.values():
    setattr(ReplyLimitsForm, _limit.name, IntegerField(
        _limit.label, validators=[InputRequired("Give a whole number (0: none at all).")],
        description=f"Default {_limit.default}."))


class OAuth2Form(DeskForm):
    """An account's or server's OAuth2 settings; the client secret is write-only."""

    provider = SelectField("Provider", choices=[
        SelectChoice("microsoft", "Microsoft 365 (Entra ID)"),
        SelectChoice("google", "Google Workspace"),
        SelectChoice("generic", "Another OAuth2 provider"),
    ], default="microsoft")
    flow = SelectField("How the desk signs in", choices=[
        SelectChoice("app", "As the app (client credentials): no person signs in"),
        SelectChoice("delegated", "As a person who connects it once (authorization code)"),
    ], default="app")
    tenant_id = StringField("Directory (tenant) id", validators=[Length(max=100)],
                            description="Microsoft: your tenant's id or domain, e.g. contoso.onmicrosoft.com.")
    client_id = StringField("Client id", validators=[Length(max=255)])
    client_secret = PasswordField("Client secret", validators=[Length(max=20_000)],
                                  render_kw={"autocomplete": "new-password"},
                                  description="Google app sign-in: the service account's JSON key. "
                                              "Blank keeps the stored one; it is never shown.")
    token_endpoint = StringField("Token endpoint", validators=[Length(max=500)],
                                 description="Another provider only (https://...).")
    authorization_endpoint = StringField("Authorization endpoint", validators=[Length(max=500)],
                                         description="Another provider, delegated sign-in only.")
    scopes = StringField("Scopes", validators=[Length(max=1000)],
                         description="Blank: the provider's mail scopes.")
