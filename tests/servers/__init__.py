"""Real mail servers (Dovecot, Postfix) started over loopback for the test suite, as pytest fixtures.

Load with `pytest_plugins = ["tests.servers.fixtures"]` in the root tests/conftest.py.
"""
