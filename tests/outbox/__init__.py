"""Tests of outgoing mail: composing, templates, the catalogue and SMTP sending."""
