# servicedesk-sidecar: every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config.yaml
PROTOS := $(shell find proto -name '*.proto' | sort)

.PHONY: install run sync test lint proto devnet bench chaos soak cometbft seaweedfs clean docs

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# The pinned CometBFT node (v0.38.25), built with `go install` into ~/.cache when missing.
cometbft: install
	$(BIN)/python -m devnet.cometbft install

# The pinned SeaweedFS (the artifact store tests' real S3 server), built from its module at a pinned
# version into ~/.cache when missing (`go install` refuses the module: its go.mod has replace directives).
seaweedfs: install
	$(BIN)/python -m devnet.seaweedfs install

run: install
	$(BIN)/servicedesk-sidecar run --config $(CONFIG)

# A manual sync of one ticket by the running sidecar (its control API, at grpc.listen of CONFIG), e.g.
# `make sync TICKET=virtengine1.../support/3 DIRECTION=both DESK=jira`; nothing new is queued while the
# same sync is still pending.
TICKET    ?=
DIRECTION ?= outbound
DESK      ?=
sync: install
	@test -n "$(TICKET)" || { echo "usage: make sync TICKET=<address>/support/<n> [DIRECTION=outbound|inbound|both] [DESK=jira|waldur] [CONFIG=config.yaml]" >&2; exit 2; }
	$(BIN)/servicedesk-sidecar sync '$(TICKET)' --direction=$(DIRECTION) $(if $(DESK),--desk '$(DESK)') --config $(CONFIG)

# Two workers, each module on one of them (a module shares its devnet node); TEST_WORKERS=0 runs in-process.
# Modules are handed out in collection order, longest first (tests/conftest.py), not by their number of tests.
TEST_WORKERS ?= 2
test: install cometbft seaweedfs
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: install
	$(BIN)/ruff check sidecar devnet tests bench
	$(BIN)/mypy

proto: install
	rm -rf gen/virtengine
	mkdir -p gen
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	find gen/virtengine -type d -exec touch {}/__init__.py \;

# SIGTERM, SIGINT and SIGHUP each stop everything the devnet started. `exec` keeps the devnet make's
# own child; make passes only SIGTERM on to it, and --stop-with-parent makes the devnet notice when
# make itself is stopping on SIGINT or SIGHUP (or is killed). DEVNET_ARGS passes options through,
# e.g. `make devnet DEVNET_ARGS="--ticket-every 5"`.
DEVNET_ARGS ?=
devnet: install cometbft
	exec $(BIN)/python -m devnet --stop-with-parent $(DEVNET_ARGS)

bench: install cometbft
	$(BIN)/python -m bench

# The chaos run (bench/chaos.py): DURATION seconds of changes on chain and at both desks under random
# sidecar SIGKILLs, node restarts, desk outages, 429s/5xx and lossy webhooks, then the independent checker
# (bench/chaos_check.py); non-zero exit on any difference. E.g. `make chaos DURATION=600 SEED=1` (SETTLE=S: how
# long the sidecar gets to settle before the check, 300 s by default).
DURATION ?= 120
SEED     ?= 1
chaos: install cometbft
	$(BIN)/python -m bench.chaos --duration $(DURATION) --seed $(SEED) $(if $(SETTLE),--settle $(SETTLE))

# The soak (bench/soak.py): SOAK_DURATION seconds (an hour by default) of 12 tickets/s created on chain, each
# changed three times on chain and three times at the desks (100 ms, rate-limited); queue depth, cursor lag,
# RSS, open fds and database size sampled once a second into bench/results/soak.json and soak.png; non-zero
# exit when one trends upward after warm-up. E.g. `make soak SOAK_DURATION=600 SEED=1`.
SOAK_DURATION ?= 3600
soak: install cometbft
	$(BIN)/python -m bench.soak --duration $(SOAK_DURATION) --seed $(SEED)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Regenerate the README's configuration reference from the schema (a test fails when it drifts).
docs: install
	$(BIN)/python -c "import re,pathlib; from sidecar.cli import reference_markdown as r; p=pathlib.Path('README.md'); s=p.read_text(); p.write_text(re.sub(r'(<!-- config-reference:start -->\n).*?(<!-- config-reference:end -->)', lambda m: m.group(1)+r()+'\n'+m.group(2), s, flags=re.S))"
