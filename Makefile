# The two commands the README promises: `make run` and `make test`.
# Both work from a fresh clone; everything lands in .venv and instance/.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
# Both cores by default: the suite talks to real servers and spends much of its time waiting.
PYTEST_ARGS ?= -n 2

.PHONY: run test shell install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# First start writes instance/switchboard.toml (what it chose: ports, DESK_URL, plain-HTTP
# cookies on loopback...), which every later command reads too. `exec`: the runner is make's
# own child, so SIGTERM to make reaches it (a shell in between would die and leave it running).
run: install
	$(BIN)/python serve.py --write-config
	$(FLASK) db upgrade
	$(FLASK) users ensure-admin
	exec $(BIN)/python serve.py

# A shell with the project's virtualenv active and FLASK_APP set: `flask mail poll`, `pytest`...
shell: install-test
	@echo "Switchboard's virtualenv is active (flask, pytest); FLASK_APP=wsgi. 'exit' leaves it."
	@FLASK_APP=wsgi bash --rcfile $(BIN)/activate -i

test: install-test
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
