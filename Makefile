# Every target sets itself up first (scripts/setup_env.sh is idempotent and fast when nothing changed).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

SHARED ?= $(or $(GRASPNET_EDGE_SHARED),../shared)
GRASPNET_MODEL ?= $(SHARED)/models/graspnet_edge_grasp.pth
EXAMPLE_DATA ?= $(SHARED)/data/graspnet_example
PYTEST_ARGS ?=
ARM64_WHEELS ?= pinned

# Sources the venv and the install space for one recipe line.
WITH_ENV := set +u; . scripts/env.sh; set -u;

.PHONY: all setup test test-arm64 demo bench clean distclean
all: test

setup:
	@scripts/setup_env.sh

# GRASPNET_EDGE_REQUIRE_ROS=1 / _SHARED=1: tests that need rclpy or ../shared fail here instead of skipping.
test: setup
	@$(WITH_ENV) GRASPNET_EDGE_REQUIRE_ROS=1 GRASPNET_EDGE_REQUIRE_SHARED=1 GRASPNET_EDGE_SHARED="$(abspath $(SHARED))" \
		python -m pytest test/ $(PYTEST_ARGS)

# Not part of `test` (~6 min under emulation, plus ~12 min to build the root the first time): the
# robot runtime on aarch64 (qemu-user, an arm64 Debian root cached in build/arm64-root) must give
# the x86_64 grasps. Needs root. ARM64_WHEELS=x5: the older wheels pip picks for Python 3.10.
test-arm64: setup
	@SHARED="$(abspath $(SHARED))" GRASPNET_MODEL="$(abspath $(GRASPNET_MODEL))" \
		EXAMPLE_DATA="$(abspath $(EXAMPLE_DATA))" ARM64_WHEELS="$(ARM64_WHEELS)" scripts/arm64/test.sh

demo: setup
	@SHARED="$(abspath $(SHARED))" GRASPNET_MODEL="$(abspath $(GRASPNET_MODEL))" \
		EXAMPLE_DATA="$(abspath $(EXAMPLE_DATA))" scripts/demo.sh

bench: setup
	@$(WITH_ENV) GRASPNET_EDGE_SHARED="$(abspath $(SHARED))" python benchmarks/run_all.py

clean:
	rm -rf build install log .pytest_cache

# Also removes the venv: the next target reinstalls everything (2-3 min).
distclean: clean
	rm -rf .venv
