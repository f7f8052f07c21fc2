"""One configuration for services and commands (issue 12): the instance config
file is read by every entry point, an environment variable still wins, and
DESK_URL follows the portal's host and port unless it is set."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


def _app(monkeypatch, path: Path, **env):
    from wsgi import create_app

    monkeypatch.setenv("SWITCHBOARD_CONFIG", str(path))
    for name in ("MAIL_DOMAIN", "DESK_URL", "PORTAL_HOST", "PORTAL_PORT", "LMTP_PORT", "LMTP_MAX_RECIPIENTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_settings_come_from_the_file_when_the_environment_is_silent(tmp_path, monkeypatch):
    config = tmp_path / "switchboard.toml"
    config.write_text('MAIL_DOMAIN = "desk.example.org"\nDESK_URL = "https://desk.example.org/"\n'
                      "LMTP_MAX_RECIPIENTS = 7\nLMTP_PORT = \"8125\"\n")
    app = _app(monkeypatch, config)
    with app.app_context():
        from switchboard.outbox.queue import mail_domain

        assert mail_domain() == "desk.example.org"
    assert app.config["DESK_URL"] == "https://desk.example.org"
    assert app.config["LMTP_MAX_RECIPIENTS"] == 7
    assert app.config["LMTP_PORT"] == 8125  # a quoted number still becomes the port


def test_an_environment_variable_wins_over_the_file(tmp_path, monkeypatch):
    config = tmp_path / "switchboard.toml"
    config.write_text('MAIL_DOMAIN = "file.example.org"\nLMTP_PORT = 8125\nPORTAL_PORT = 5601\n')
    app = _app(monkeypatch, config, MAIL_DOMAIN="env.example.org", LMTP_PORT="9125", PORTAL_PORT="5702")
    with app.app_context():
        from switchboard.outbox.queue import mail_domain

        assert mail_domain() == "env.example.org"
    assert app.config["LMTP_PORT"] == 9125
    assert app.config["DESK_URL"] == "http://127.0.0.1:5702"


def test_desk_url_follows_the_portal_port_unless_set(tmp_path, monkeypatch):
    config = tmp_path / "switchboard.toml"
    config.write_text("PORTAL_PORT = 5601\n")
    assert _app(monkeypatch, config).config["DESK_URL"] == "http://127.0.0.1:5601"
    wildcard = _app(monkeypatch, config, PORTAL_HOST="0.0.0.0").config["DESK_URL"]
    assert wildcard.endswith(":5601") and "0.0.0.0" not in wildcard
    config.write_text('PORTAL_PORT = 5601\nDESK_URL = "https://desk.example.org"\n')
    assert _app(monkeypatch, config).config["DESK_URL"] == "https://desk.example.org"


def _run(args, config: Path, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MAIL_DOMAIN", "DESK_URL")}
    environment.update(SWITCHBOARD_CONFIG=str(config), **env)
    return subprocess.run(FLASK + args, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def test_a_command_run_by_hand_uses_the_database_the_file_names(tmp_path):
    config = tmp_path / "switchboard.toml"
    database = tmp_path / "from-file.db"
    config.write_text(f'DATABASE_URL = "sqlite:///{database}"\nSECRET_KEY = "from-the-file"\n')
    upgrade = _run(["db", "upgrade"], config)
    assert upgrade.returncode == 0, upgrade.stderr
    assert database.exists(), "db upgrade did not use the file's DATABASE_URL"
    stats = _run(["desk", "stats", "--json"], config)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["calls"]["open"] == 0


@pytest.mark.parametrize("content, says", [
    ("MAIL_DOMAIN = desk.example.org\n", "is not valid TOML"),
    ('mail_domain = "desk.example.org"\n', "upper-case setting name"),
    ("[LMTP]\nPORT = 8024\n", "upper-case setting name"),
    (b"\xff\xfe\x00junk", "is not valid TOML"),
])
def test_a_broken_config_file_is_refused_with_the_reason(tmp_path, monkeypatch, content, says):
    config = tmp_path / "switchboard.toml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        _app(monkeypatch, config)
    message = str(stopped.value)
    assert str(config) in message and says in message


def test_a_broken_config_file_stops_a_command_with_one_line(tmp_path):
    config = tmp_path / "switchboard.toml"
    config.write_text("MAIL_DOMAIN = desk.example.org\n")
    result = _run(["desk", "stats"], config)
    assert result.returncode != 0
    assert str(config) in result.stderr and "is not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_processes_starting_together_on_a_fresh_instance_share_one_secret_key(tmp_path):
    """make run starts three processes (and test workers start at once): the instance's
    secret key is made by one of them and read by the others, never "File exists" or a
    half-written key (the code before failed with "File exists" in 1-5 of 8, and one read an
    empty key). Eight processes released together, twice."""
    script = (
        "import sys, time\n"
        "from switchboard.config import _instance_secret\n"
        "start = float(sys.argv[2])\n"
        "while time.time() < start: pass\n"
        "print(_instance_secret(sys.argv[1]))\n"
    )
    for round_ in range(2):
        instance = tmp_path / f"instance{round_}"
        start = f"{__import__('time').time() + 1.5:.3f}"
        children = [subprocess.Popen([sys.executable, "-c", script, str(instance), start], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(8)]
        results = [child.communicate(timeout=60) for child in children]
        assert [err for _, err in results if err] == []
        keys = {out.strip() for out, _ in results}
        assert len(keys) == 1 and len(keys.pop()) >= 40
        assert [p.name for p in instance.iterdir()] == ["secret_key"]  # no draft left behind
        assert oct((instance / "secret_key").stat().st_mode & 0o777) == "0o600"
