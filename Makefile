# Two commands: `make run` (set up + serve with a local worker) and `make test` (the whole suite).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ADDR ?= 127.0.0.1:8000

.PHONY: run test setup browser-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the machine has its CPU wheel; anything unpinned would pull CUDA builds.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Front-end libraries (Apache ECharts) come from the npm registry into node_modules/, served as
# static files; nothing third-party is committed.
NODE_STAMP := node_modules/.package-lock.json
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Charts need Node.js + npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# UI translations (zh-hans): compiled from locale/*/LC_MESSAGES/django.po with gettext's msgfmt.
MO := locale/zh_Hans/LC_MESSAGES/django.mo
$(MO): locale/zh_Hans/LC_MESSAGES/django.po $(STAMP)
	@command -v msgfmt >/dev/null || { echo "Translations need gettext's msgfmt (Debian: apt-get install gettext)" >&2; exit 1; }
	$(BIN)/python manage.py compilemessages --ignore=.venv --ignore=node_modules -v 0

setup: $(STAMP) $(NODE_STAMP) $(MO)

run: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_admin
	$(BIN)/python manage.py serve $(ADDR)

# Debian's Chromium for the browser tests (never a downloaded browser build), and CJK fonts so
# that screenshots of Chinese pages are readable.
browser-deps:
	@test -x /usr/bin/chromium -a -d /usr/share/fonts/opentype/noto || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-noto-cjk >/dev/null; \
	  else echo "Browser tests need Debian's chromium: sudo apt-get install chromium chromium-driver fonts-noto-cjk" >&2; exit 1; fi; }

test: setup browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var/test_medstudio_*.sqlite3* .pytest_cache
