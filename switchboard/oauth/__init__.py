"""OAuth2 sign-in for mailboxes and SMTP servers (Microsoft 365, Google Workspace, any
OAuth2 provider): the grant an admin configures, the access tokens it yields, and the SASL
strings (XOAUTH2, OAUTHBEARER) that carry them to IMAP, POP3 and SMTP servers."""
