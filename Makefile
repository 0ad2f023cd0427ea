# berth: the commands the README names. `make test` needs nothing installed
# beyond Rust and Python 3: it installs the rest into .venv/ on first use.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
TOOLS_STAMP := $(VENV)/.tools-requirements
export SAM_CLI_TELEMETRY := 0
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: soak fuzz demo test check browser hakari smoke-arm64 sam-build sam-local engine engine-stop unit integration template build tools local-aws local-aws-stop clean help bench-driver bench-capacity bench-sim bench-parse bench-burst bench-console screenshots simulate

## demo: berth's main job on the local AWS: a mixed set of jobs submitted, followed to their end
## and checked; real containers when a Docker engine with the job image answers (`make engine`),
## played ones otherwise; leaves nothing running
demo: tools
	cargo run --quiet -p berth-local -- demo

## test: format, lints, unit and integration tests, template checks and the arm64 build (CI
## starts berth's Docker engine first, then runs this, `smoke-arm64`, the demo and a soak of 40
## jobs: .ci/run)
test: check template build browser
	cargo test --workspace

## check: formatting, clippy, and the workspace-hack crate up to date
check: hakari
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo hakari generate --diff
	cargo hakari manage-deps --dry-run

# One feature set for every third-party crate, whichever package is built
# (crates/workspace-hack, managed by cargo-hakari): the demo, the local run,
# the CLI and the functions share one build. After a dependency change:
# `cargo hakari generate && cargo hakari manage-deps`.
HAKARI_VERSION := 0.9.39
hakari:
	cargo hakari --version 2>/dev/null | grep -q ' $(HAKARI_VERSION)$$' || \
		cargo install --quiet --locked cargo-hakari --version $(HAKARI_VERSION)

## unit: the tests that need no local AWS
unit:
	cargo test --lib -p berth-core -p berth-aws -p berth-sim -p berth-driver -p berth-ecs-runner \
		-p berth-lambda-task-processor -p berth-capacity-metric -p berth-cli

## integration: the tests against the local AWS
integration: browser
	cargo test -p berth-tests

## template: sam validate --lint and cfn-lint on template.yaml
template: tools
	AWS_DEFAULT_REGION=us-east-1 sam validate --lint
	cfn-lint template.yaml

## build: sam build of the three zip functions into .aws-sam/ for ARCH (default arm64, the
## template's default; ARCH=x86_64 builds for x86_64, and `sam deploy` then needs
## --parameter-overrides Architecture=x86_64). The sample image function needs Docker and is
## left out. arm64 is cross-compiled with the Zig of .venv/.
ARCH ?= arm64
# --no-cached: cargo's target dir is the build cache; SAM's own would hash the whole
# workspace, .venv included, before each build.
build: tools
	if [ "$(ARCH)" = arm64 ]; then rustup target add aarch64-unknown-linux-gnu; fi
	sam build --beta-features --no-cached --exclude SampleTaskFunction --parameter-overrides Architecture=$(ARCH)

## sam-build: sam build of the three zip functions for this machine's architecture into
## .aws-sam/local, for `sam local invoke` (README, "sam local invoke"). A debug build
## (SAM_BUILD_MODE=debug), for speed: in `.ci/run` on a clean clone it took 7.3 minutes with an
## empty cargo target dir and seconds with a warm one, where `make build`'s arm64 release build,
## with fat LTO, took 16.5 minutes from empty; `make sam-build SAM_BUILD_MODE=` builds for release.
SAM_LOCAL_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)
SAM_BUILD_MODE ?= debug
sam-build: tools
	SAM_BUILD_MODE=$(SAM_BUILD_MODE) sam build --beta-features --no-cached --exclude SampleTaskFunction \
		--build-dir .aws-sam/local --parameter-overrides Architecture=$(SAM_LOCAL_ARCH)

## sam-local: `sam local invoke` of each zip function with each of its sample events (events/)
## against a local run (`berth-local run --sam-host`), checking each answer and effect (the
## test sam_local::): the `sam-build` functions in berth's engine (`make engine`, which this
## starts or reuses and leaves running), on a base image made offline from Debian's packages
sam-local: sam-build engine
	DOCKER_HOST=unix://$(CURDIR)/.local-aws/engine/docker.sock cargo test -p berth-tests \
		--test integration -- --ignored --nocapture sam_local::

## smoke-arm64: each function of .aws-sam/build (`make build`, arm64) under qemu-user: it asks
## the Runtime API for work, takes its sample event and answers; installs Debian's
## qemu-user-static and libc6-arm64-cross when missing (as root)
smoke-arm64:
	command -v qemu-aarch64-static >/dev/null && [ -d /usr/aarch64-linux-gnu/lib ] || \
		apt-get install -y -q qemu-user-static libc6-arm64-cross || \
		{ apt-get update -q && apt-get install -y -q qemu-user-static libc6-arm64-cross; }
	scripts/arm64-smoke

## browser: headless Chromium and its WebDriver from Debian's packages (chromium,
## chromium-driver), for the console's browser tests; installed when missing, as root
browser:
	command -v chromedriver >/dev/null && command -v chromium >/dev/null || \
		apt-get install -y -q chromium chromium-driver || \
		{ apt-get update -q && apt-get install -y -q chromium chromium-driver; }

## tools: SAM CLI, cargo-lambda and cfn-lint, in .venv/
tools: $(TOOLS_STAMP)
$(TOOLS_STAMP): scripts/requirements/tools.txt
	[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	cp $< $@

## engine: a Docker engine of berth's own (installs Debian's docker.io when missing, as root; its
## one bridge, berth0, forwards nothing beyond this machine) and its images, made offline: the
## demo and the local run then run ECS tasks as real containers, and `sam local invoke` runs on it
engine:
	scripts/local-engine start >/dev/null
	DOCKER_HOST=unix://$(CURDIR)/.local-aws/engine/docker.sock scripts/local-images

## engine-stop: stop that engine and its containers
engine-stop:
	scripts/local-engine stop

## local-aws: start the local AWS (or reuse it) and print its exports
local-aws:
	@scripts/local-aws start

## local-aws-stop: stop the local AWS
local-aws-stop:
	@scripts/local-aws stop

clean: local-aws-stop
	cargo clean
	rm -rf $(VENV) .local-aws .aws-sam

help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## //'

## soak: SOAK_JOBS jobs (default 2,000, about an hour here) end to end on the local run with 5% of each fault kind
## injected; prints the reconciliation and fails when a job is unaccounted for or launched twice
SOAK_JOBS ?= 2000
SOAK_FAULT_RATE ?= 0.05
soak: tools
	cargo run --quiet -p berth-local -- soak --jobs $(SOAK_JOBS) --fault-rate $(SOAK_FAULT_RATE)

## fuzz: the job-message parser under libFuzzer for FUZZ_SECONDS (default 600), then the
## corpus (crates/core/fuzz/corpus, replayed by the tests) minimised; needs the nightly toolchain
FUZZ_SECONDS ?= 600
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	cd crates/core/fuzz && cargo +nightly fuzz run job_message --fuzz-dir . -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1
	cd crates/core/fuzz && cargo +nightly fuzz cmin job_message --fuzz-dir .

## bench-driver: the driver handler on batches of 1, 10 and 100 jobs, 20 ms added per AWS call
bench-driver:
	cargo bench -p berth-tests --bench driver

## bench-capacity: the capacity metric over 1,000 and 10,000 container instances, 20 ms per ECS call
bench-capacity:
	cargo bench -p berth-tests --bench capacity

## screenshots: docs/console/*.png, what headless Chromium shows of berth-local demo's console
## (the browser test, writing what it sees: the cluster launching and its metrics, the jobs, a
## failed job, the cost view with its replay, the simulate view, the jobs at phone width)
screenshots: tools browser
	mkdir -p docs/console
	BERTH_SCREENSHOTS=$(CURDIR)/docs/console cargo test -p berth-tests --test integration -- \
		browser:: --nocapture

## bench-console: berth console's jobs pages with 100,000 jobs in the table on the local AWS
## (BERTH_BENCH_JOBS sets how many): median and slowest of ten requests each (target: the
## first page under 200 ms; reported, not tested)
bench-console:
	cargo bench -p berth-tests --bench console

## bench-sim: the simulator on a day of 100,000 jobs, every policy; prints jobs simulated per second
bench-sim:
	cargo bench -p berth-sim --bench simulate

## bench-burst: BURST_JOBS (2,000) jobs submitted at once to the local run, RunTask and DynamoDB's
## writes throttled at AWS's documented rates times BURST_SCALE (0.1: 10 at once, then 2 a
## second); prints the launches a second against that limit, jobs launched twice, jobs failed
## by throttling and the time to launch all against the floor (about 20 minutes at the defaults)
BURST_JOBS ?= 2000
BURST_SCALE ?= 0.1
bench-burst: tools
	cargo run --quiet -p berth-local -- burst --jobs $(BURST_JOBS) --scale $(BURST_SCALE) | grep -v '^{"_aws"'

## bench-parse: the job message parser on 256 KiB bodies, ordinary and adversarial (MB/s,
## and the size of the reason it gives)
bench-parse:
	cargo bench -p berth-core --bench parse

## simulate: berth and the alternatives on the sparse day (TRACE=, see `berth simulate --help`)
TRACE ?= sparse-day
simulate:
	cargo run --quiet -p berth-cli -- simulate --trace $(TRACE) --policy all
