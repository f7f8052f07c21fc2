"""Each account's poll interval, set from the command line (`mail accounts add
--interval`, `mail accounts edit NAME --interval/--timeout`)."""

from switchboard.db import db
from switchboard.inbound.accounts import get_account


def _add(runner, *extra):
    return runner.invoke(args=["mail", "accounts", "add", "--name", "support", "--protocol", "imap",
                               "--host", "127.0.0.1", "--security", "none", "--username", "support@desk.test",
                               "--password-stdin", *extra], input="secret-pass\n")


def test_accounts_add_and_edit_set_the_poll_interval_and_timeout(app):
    runner = app.test_cli_runner()
    result = _add(runner, "--interval", "120")
    assert result.exit_code == 0, result.output
    account = get_account("support")
    assert (account.poll_interval_seconds, account.timeout_seconds) == (120, 30)

    result = runner.invoke(args=["mail", "accounts", "edit", "support", "--interval", "30", "--timeout", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Account support: polled every 30 s, server timeout 5 s."
    db.session.expire_all()
    account = get_account("support")
    assert (account.poll_interval_seconds, account.timeout_seconds) == (30, 5)


def test_accounts_edit_refuses_bad_input_and_changes_nothing(app):
    runner = app.test_cli_runner()
    assert _add(runner).exit_code == 0
    result = runner.invoke(args=["mail", "accounts", "edit", "support", "--interval", "5", "--timeout", "9"])
    assert result.exit_code != 0 and "Poll interval seconds must be between 10 and 86400." in result.output
    db.session.expire_all()
    account = get_account("support")
    assert (account.poll_interval_seconds, account.timeout_seconds) == (60, 30)  # the timeout did not change either
    result = runner.invoke(args=["mail", "accounts", "edit", "nobody", "--interval", "60"])
    assert result.exit_code != 0 and "No incoming account named 'nobody'" in result.output
    assert runner.invoke(args=["mail", "accounts", "edit", "support"]).exit_code != 0
    runner.invoke(args=["mail", "accounts", "add", "--name", "help", "--protocol", "lmtp",
                        "--address", "help@desk.test"])
    result = runner.invoke(args=["mail", "accounts", "edit", "help", "--interval", "60"])
    assert result.exit_code != 0 and "LMTP account" in result.output
    result = runner.invoke(args=["mail", "accounts", "add", "--name", "help2", "--protocol", "lmtp",
                                 "--address", "help2@desk.test", "--interval", "60"])
    assert result.exit_code != 0 and "An LMTP account has no mailbox" in result.output
