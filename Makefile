# The two commands the README promises: `make run` and `make test`.
# Both work from a fresh clone; everything lands in .venv and instance/.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
# Both cores by default: the suite talks to real servers and spends much of its time waiting.
PYTEST_ARGS ?= -n 2

.PHONY: run test install install-test clean

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

# Plain HTTP on loopback, so the session cookie may not insist on HTTPS here.
run: install
	$(FLASK) db upgrade
	$(FLASK) users ensure-admin
	SESSION_COOKIE_SECURE=0 $(BIN)/python serve.py

test: install-test
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
