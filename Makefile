# pnap — see README.md. Targets need Go 1.26; tests that need root skip
# without it.
# Go from PATH, or where the official tarball puts it: sudo's secure_path
# drops /usr/local/go/bin, and `sudo make test` must still work.
GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
# Tests run go themselves (to build pnapd): give them the same one.
ifneq ($(filter /%,$(GO)),)
export PATH := $(dir $(GO)):$(PATH)
endif
BIN       ?= bin
# Packages whose tests exercise memory shared between goroutines run under
# the race detector; the rest run plainly.
RACE_PKGS  = ./fib/ ./forwarder/ ./forwarder/neighbours/ ./forwarder/slowpath/ \
             ./forwarder/steering/ ./forwarder/xsk/ ./probes/ ./optimizer/ ./daemon/ \
             ./routes/bgp/
# Packages whose tests measure timing (the benchmark harnesses' smoke runs,
# the emulator's accuracy, the generator's pacing, what probes measure)
# run alone, one at a time, after the rest, so that other packages' tests
# do not share their two CPUs. cmd/pnapd is one of them, and runs a second
# time under the race detector: its tests drive the daemon's goroutines
# (API, reload, workers) all at once; the few that measure precisely skip
# there (a race-instrumented pnapd is several times slower).
SOLO_PKGS  = ./bench/rfc2544/ ./bench/bgpbench/ ./bench/emu/ ./bench/traffic/ ./bench/demo/ ./bench/steerlab/ ./cmd/pnapd/
SOLO_RACE_PKGS = ./cmd/pnapd/
PLAIN_PKGS = $(filter-out $(RACE_PKGS:./%/=github.com/pnap-project/pnap/%) $(SOLO_PKGS:./%/=github.com/pnap-project/pnap/%) $(SOLO_RACE_PKGS:./%/=github.com/pnap-project/pnap/%),$(shell $(GO) list ./...))
BENCHTIME ?= 1s

TRIAL     ?= 500ms

.PHONY: all build cli-files install deb test fuzz soak lint bench bench-fib bench-rfc2544 bench-bgp demo scenarios arch clean

all: build

# The version pnapd reports: git describe of the checkout.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/pnapd ./cmd/pnapd

# The bash and zsh completions and the man page, printed by the built
# pnapd from its command table, for install and deb.
cli-files: build
	$(BIN)/pnapd completion bash > $(BIN)/pnapd.bash
	$(BIN)/pnapd completion zsh > $(BIN)/_pnapd
	$(BIN)/pnapd man > $(BIN)/pnapd.8

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: lint
	@command -v gcc >/dev/null || { echo "make test: the race detector needs a C compiler: apt-get install gcc"; exit 1; }
	$(GO) test -race -count=1 $(RACE_PKGS)
	$(GO) test -count=1 $(PLAIN_PKGS)
	$(GO) test -count=1 -p 1 $(SOLO_PKGS)
	$(GO) test -race -count=1 -p 1 $(SOLO_RACE_PKGS)

# Every fuzz target in the tree for FUZZTIME (20 s) each beyond its seed
# corpus (see .ci/fuzz). A failure leaves its input under the package's
# testdata/fuzz. .ci/run calls this after make test.
FUZZTIME ?= 20s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash .ci/fuzz

# FIB benchmarks side by side with gaissmai/bart on the shared full tables;
# ends with one table of ratios.
bench-fib:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 -timeout 30m ./fib/

# RFC 2544 throughput and latency of pnap, Linux forwarding, a raw AF_XDP
# bounce and a native XDP redirect, in one run (root). Writes
# bench/results/rfc2544.{md,json} and plots; TRIAL=60s for a full report.
bench-rfc2544:
	mkdir -p bench/results
	$(GO) test -run '^$$' -bench RFC2544 -benchtime 1x -timeout 60m ./bench/rfc2544/ -args -report $(CURDIR)/bench/results -trial $(TRIAL)

# pnapd's BGP side by side with BIRD 2 (root): 4 BIRD feeders send the
# full tables to pnapd, then to a BIRD receiver; convergence time, peak RSS
# and the flap rate each sustains. Writes bench/results/bgp.{md,json};
# about 2 minutes.
bench-bgp:
	mkdir -p bench/results
	$(GO) test -run '^$$' -bench BGP -benchtime 1x -timeout 30m ./bench/bgpbench/ -args -report $(CURDIR)/bench/results

bench: bench-fib bench-rfc2544 bench-bgp

# The soak (root, not in CI; about 12 minutes): pnapd with the full tables
# at 80 % of its zero-loss rate for SOAK (10m) while prefixes move and
# routes reload; fails on any drop inside pnapd or RSS/goroutine growth.
# Writes bench/results/soak.{md,json,png}.
SOAK ?= 10m
soak:
	mkdir -p bench/results
	$(GO) test -count=1 -run '^TestSoak$$' -v -timeout 60m ./bench/rfc2544/ -args -soak $(SOAK) -report $(CURDIR)/bench/results

# The lab demo (root): a customer, pnapd, three emulated backbones and an
# "Internet"; mid-run the best backbone degrades and pnapd re-steers. About
# two minutes; writes its plot to DEMO_PLOT (bin/demo.png), so that a run
# leaves the checkout clean; DEMO_PLOT=bench/results/demo.png updates the
# committed one.
DEMO_PLOT ?= $(BIN)/demo.png
demo:
	@mkdir -p $(dir $(DEMO_PLOT))
	$(GO) run ./bench/demo -plot $(abspath $(DEMO_PLOT))

# The decision-quality suite (root, about 20 minutes): every scenario of
# bench/steerlab on a lab of its own, with active probing and in-band
# samples only, judged against static choices and the hindsight oracle,
# all measured; writes SCENARIOS_OUT/scenarios.{json,md} and a plot per
# scenario. SCENARIOS="steady-jitter,commit" runs some; SCENARIO_MODES=active
# one mode.
SCENARIOS_OUT  ?= bench/results
SCENARIOS      ?=
SCENARIO_MODES ?= active,passive
scenarios:
	$(GO) run ./bench/scenarios -out $(SCENARIOS_OUT) -mode $(SCENARIO_MODES) $(if $(SCENARIOS),-only $(SCENARIOS))

# The architecture picture: pnap's packages in layers by import depth, their
# imports, and the paths of a packet and of a decision, from go list. Left
# out: bench, the tools, and the helpers only tests import (*test).
arch:
	$(GO) run ./internal/archplot -o docs/architecture.png -omit bench,internal/shareddata,internal/archplot,internal/cmdline,forwarder/internal/frametest,forwarder/xsk/xsktest,configs/configtest,internal/setting/settingtest,routes/bgp/bgptest,internal/layout

# Install the binary, the unit, an example configuration (never over an
# existing one), the sysusers.d and tmpfiles.d entries that create the
# pnapd user and /etc/pnapd, the completions and the man page (where bash,
# zsh and man look without being told). DESTDIR stages it (packages, the
# test).
PREFIX  ?= /usr/local
DESTDIR ?=
install: build cli-files
	install -D -m 0755 $(BIN)/pnapd $(DESTDIR)$(PREFIX)/bin/pnapd
	install -D -m 0644 $(BIN)/pnapd.bash $(DESTDIR)/usr/share/bash-completion/completions/pnapd
	install -D -m 0644 $(BIN)/_pnapd $(DESTDIR)/usr/share/zsh/vendor-completions/_pnapd
	install -D -m 0644 $(BIN)/pnapd.8 $(DESTDIR)/usr/share/man/man8/pnapd.8
	install -D -m 0644 configs/pnapd.service $(DESTDIR)/etc/systemd/system/pnapd.service
	install -D -m 0644 configs/packaging/pnapd.sysusers $(DESTDIR)/usr/lib/sysusers.d/pnapd.conf
	install -D -m 0644 configs/packaging/pnapd.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/pnapd.conf
	install -D -m 0644 configs/examples/full.toml $(DESTDIR)/usr/share/doc/pnapd/pnapd.toml.example
	install -D -m 0644 configs/grafana-dashboard.json $(DESTDIR)/usr/share/doc/pnapd/grafana-dashboard.json
	@if [ ! -e $(DESTDIR)/etc/pnapd/pnapd.toml ]; then \
		install -D -m 0640 configs/examples/minimal.toml $(DESTDIR)/etc/pnapd/pnapd.toml; \
		echo "installed an example /etc/pnapd/pnapd.toml: edit it, then systemctl enable --now pnapd"; \
	fi

# A Debian package of the same files, Debian's paths, built with nfpm
# (fetched and built by go run on first use, about 1.5 min). Writes
# $(BIN)/pnapd_VERSION_amd64.deb.
NFPM        ?= github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
DEB_VERSION ?= 0.0~git$(subst -,.,$(VERSION))
deb: build cli-files
	mkdir -p $(BIN)/deb
	gzip -9n < $(BIN)/pnapd.8 > $(BIN)/deb/pnapd.8.gz
	sed 's|/usr/local/bin/pnapd|/usr/bin/pnapd|g' configs/pnapd.service > $(BIN)/deb/pnapd.service
	sed 's|$${BIN}|$(abspath $(BIN))|g' configs/packaging/nfpm.yaml > $(BIN)/deb/nfpm.yaml
	DEB_VERSION=$(DEB_VERSION) $(GO) run $(NFPM) package --config $(BIN)/deb/nfpm.yaml --packager deb --target $(BIN)/

clean:
	rm -rf $(BIN)
