"""Switchboard's domain: the models and services that the portal, the receiver
and the scheduler share. Nothing here imports those three packages."""

from switchboard.app import init_domain

__all__ = ["init_domain"]
