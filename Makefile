# Every target sets itself up first (scripts/setup_env.sh is idempotent and fast when nothing changed).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

SHARED ?= $(or $(GRASPNET_EDGE_SHARED),../shared)
GRASPNET_MODEL ?= $(SHARED)/models/graspnet_edge_grasp.pth
EXAMPLE_DATA ?= $(SHARED)/data/graspnet_example
PYTEST_ARGS ?=
# extra arguments of benchmarks/run_all.py (e.g. BENCH_ARGS=--full)
BENCH_ARGS ?=
# test paths for test, test-ros and test-core (e.g. TEST_PATHS=test/test_replay.py)
TEST_PATHS ?= test/
ARM64_WHEELS ?= pinned

# ROS 2 distribution: kilted (default; .venv, build/, install/) or jazzy (.venv-jazzy, build-jazzy/,
# install-jazzy/), e.g. `make test ROS_DISTRO=jazzy`. A ROS_DISTRO inherited from the environment
# (a sourced /opt/ros setup) is ignored; GRASPNET_EDGE_ROS_DISTRO sets the default instead.
ifeq ($(origin ROS_DISTRO),command line)
DISTRO := $(ROS_DISTRO)
else
DISTRO := $(or $(GRASPNET_EDGE_ROS_DISTRO),kilted)
endif

# Sources the distribution's venv and install space for one recipe line.
WITH_ENV := set +u; export GRASPNET_EDGE_ROS_DISTRO=$(DISTRO); . scripts/env.sh; set -u;
# GRASPNET_EDGE_REQUIRE_ROS=1 / _SHARED=1: tests that need rclpy or ../shared fail here instead of skipping.
PYTEST := $(WITH_ENV) GRASPNET_EDGE_REQUIRE_ROS=1 GRASPNET_EDGE_REQUIRE_SHARED=1 \
	GRASPNET_EDGE_SHARED="$(abspath $(SHARED))" python -m pytest

# Python 3.10 venv with the oldest dependency versions setup.py allows where they matter
# (test-jammy-deps); see requirements-jammy-deps.txt.
JAMMY_PYTHON ?= python3.10
JAMMY_VENV := .venv-jammy-deps

.PHONY: all setup test test-ros test-core test-jammy-deps test-arm64 demo bench clean distclean
all: test

setup:
	@scripts/setup_env.sh $(DISTRO)

# The whole suite on one distribution.
test: setup
	@$(PYTEST) $(TEST_PATHS) $(PYTEST_ARGS)

# Only the ROS-facing tests (marker `ros`): what changes between distributions. Fails if none ran.
test-ros: setup
	@$(PYTEST) -m ros $(TEST_PATHS) $(PYTEST_ARGS)

# Only the ROS-free tests.
test-core: setup
	@$(PYTEST) -m "not ros" $(TEST_PATHS) $(PYTEST_ARGS)

# The fallbacks in graspnet_edge_ros/compat.py against really old SciPy/Pillow, on Python 3.10.
test-jammy-deps:
	@scripts/jammy_deps.sh "$(JAMMY_PYTHON)" "$(JAMMY_VENV)" $(PYTEST_ARGS)

# Not part of `test` (~6 min under emulation, plus ~12 min to build the root the first time): the
# robot runtime on aarch64 (qemu-user, an arm64 Debian root cached in build/arm64-root) must give
# the x86_64 grasps. Needs root. ARM64_WHEELS=x5: the older wheels pip picks for Python 3.10.
test-arm64: setup
	@SHARED="$(abspath $(SHARED))" GRASPNET_MODEL="$(abspath $(GRASPNET_MODEL))" \
		EXAMPLE_DATA="$(abspath $(EXAMPLE_DATA))" ARM64_WHEELS="$(ARM64_WHEELS)" scripts/arm64/test.sh

demo: setup
	@export GRASPNET_EDGE_ROS_DISTRO=$(DISTRO); SHARED="$(abspath $(SHARED))" \
		GRASPNET_MODEL="$(abspath $(GRASPNET_MODEL))" EXAMPLE_DATA="$(abspath $(EXAMPLE_DATA))" scripts/demo.sh

bench: setup
	@$(WITH_ENV) GRASPNET_EDGE_SHARED="$(abspath $(SHARED))" python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf build build-* install install-* log log-* .pytest_cache

# Also removes the venvs: the next target reinstalls everything (2-3 min per distribution).
distclean: clean
	rm -rf .venv .venv-*
