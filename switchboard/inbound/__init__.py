"""Incoming mail: parsing, classification, matching and the ingest pipeline."""
