# Two commands on a fresh machine: `make run` and `make test`.
.PHONY: run test setup train lint bench clean

setup:
	@scripts/setup.sh

run: setup
	@.venv/bin/hotline run

test: setup
	@.venv/bin/ruff check .
	@.venv/bin/mypy
	@.venv/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

train: setup
	@.venv/bin/hotline train --force

bench: setup
	@.venv/bin/python bench/kb_search.py
	@.venv/bin/python bench/turn_latency.py
	@.venv/bin/python bench/channel_latency.py
	@.venv/bin/python bench/email_burst.py

clean:
	rm -rf var models .rasa
