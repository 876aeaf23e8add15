# sendwarden: `make run` starts the relay with the embedded default configuration;
# `make test` installs everything the tests need and runs them. Both work on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
# Debian packages the tests drive as independent, real peers (postfix: the milter tests run
# a throw-away instance in a temporary directory, and smtp-source is the reliability harness's
# load generator; the preseed below keeps the package from configuring, let alone starting, a
# system mail server on port 25; opendkim-tools: an independent DKIM verifier; iproute2 and
# openssl: test namespaces and dev certificates; clamav-daemon: the ClamAV tests start clamd
# themselves with a one-signature database; e2fsprogs: mkfs.ext4 for the small filesystem a
# quarantine fills up; prometheus: promtool checks and unit-tests docs/monitoring's alert rules.
# Its package enables a Prometheus server (and node exporter) on systemd hosts: sysdeps stops and
# disables them again, nothing of it runs for the tests; chromium: headless, the oracle for which
# texts and links an HTML body shows, tests/message/test_browser_oracle.py; rspamd:
# bench/smtp_bench.py's Postfix + rspamd case, which starts its own rspamd in a loopback-only
# network namespace; sysdeps stops the packaged service, which apt starts on systemd hosts).
DEBS    := swaks postfix systemd opendkim-tools iproute2 openssl clamav-daemon e2fsprogs prometheus chromium rspamd
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint deps sysdeps clean man completion

run: $(STAMP)
	$(BIN)/sendwarden serve

# Lint first (seconds): ruff's rule set and mypy --strict on proxy/, both configured in
# pyproject.toml; the import-linter layers contract runs inside the suite (tests/test_import_contract.py).
test: sysdeps $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check proxy tests bench
	$(BIN)/mypy

deps: $(STAMP)

# The manual page and the shell completions, generated from the command's own parser.
man: $(STAMP)
	mkdir -p build
	$(BIN)/sendwarden manpage > build/sendwarden.1

completion: $(STAMP)
	mkdir -p build
	$(BIN)/sendwarden completion bash > build/sendwarden.bash
	$(BIN)/sendwarden completion zsh > build/_sendwarden

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Install the Debian packages the tests use, only when one is missing. Postfix is preseeded to
# "No configuration": no main.cf, so no mail daemon starts or listens on port 25. Only promtool
# of the prometheus package is used: its server is stopped and disabled where systemd runs, and
# so is the rspamd service (the benchmark starts its own).
sysdeps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections && \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	  if [ -d /run/systemd/system ]; then \
	    $(SUDO) systemctl disable --now prometheus.service prometheus-node-exporter.service rspamd.service 2>/dev/null || true; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) var build .pytest_cache
