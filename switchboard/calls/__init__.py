"""Calls: incidents and questions logged by or for a customer."""
