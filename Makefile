# sluice top-level Makefile. `./configure` writes $(BUILDDIR)/Makefile.vars;
# the targets below run it with defaults when it has not been run yet.
BUILDDIR ?= objs
-include $(BUILDDIR)/Makefile.vars

CORE_SOURCES := $(sort $(wildcard src/core/*.cc src/event/*.cc src/os/*.cc src/http/*.cc))
ALL_SOURCES := $(CORE_SOURCES) $(MODULE_SOURCES)
OBJS := $(patsubst %.cc,$(BUILDDIR)/%.o,$(ALL_SOURCES))
MODULES_OBJ := $(BUILDDIR)/modules.o
MAIN_OBJ := $(BUILDDIR)/src/sluice.o
UNIT_OBJS := $(patsubst %.cc,$(BUILDDIR)/%.o,$(sort $(wildcard t/unit/*.cc)))
INTEGRATION_OBJS := $(patsubst %.cc,$(BUILDDIR)/%.o,$(sort $(wildcard t/integration/*.cc)) t/lib/harness.cc)
TEST_LIBS := -lgtest -lgtest_main -pthread
$(INTEGRATION_OBJS): CXXFLAGS += -It/lib
HELLO_MODULE := contrib/modules/hello

.PHONY: all build run test unit integration bench fuzz install uninstall clean deps configured

# Build with every core unless the caller chose (make -jN).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(filter -j%,$(MAKEFLAGS)),)
SUBMAKE_JOBS = -j$(JOBS)
endif

all: build

deps:
	@sh contrib/deps.sh

# Runs ./configure with defaults when this build directory has none yet.
$(BUILDDIR)/Makefile.vars:
	./configure --builddir=$(BUILDDIR)

configured: $(BUILDDIR)/Makefile.vars

build: configured
	@$(MAKE) --no-print-directory $(SUBMAKE_JOBS) -f Makefile BUILDDIR=$(BUILDDIR) $(BUILDDIR)/sluice

$(BUILDDIR)/sluice: $(OBJS) $(MODULES_OBJ) $(MAIN_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILDDIR)/%.o: %.cc $(BUILDDIR)/Makefile.vars
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c -o $@ $<

$(MODULES_OBJ): $(BUILDDIR)/modules.cc
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILDDIR)/unit_tests: $(UNIT_OBJS) $(OBJS) $(MODULES_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS) $(TEST_LIBS)

$(BUILDDIR)/integration_tests: $(INTEGRATION_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(TEST_LIBS)

$(BUILDDIR)/test_upstream: $(BUILDDIR)/t/lib/test_upstream.o
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

# `make run`: install what is missing, build, and serve conf/sluice.conf in the foreground.
run: deps
	@$(MAKE) --no-print-directory build
	@mkdir -p logs
	@echo "sluice listens on http://127.0.0.1:8080/ (static site) and http://127.0.0.1:8081/ (demo API)"
	@echo "try:  curl -i http://127.0.0.1:8080/"
	@echo "      curl -i http://127.0.0.1:8081/api/items"
	@echo "      curl -i http://127.0.0.1:8080/nonexistent"
	@echo "stop with Ctrl-C"
	exec $(BUILDDIR)/sluice -p $(CURDIR)/ -c conf/sluice.conf -g 'daemon off;'

# The test build always has the example module compiled in, as a module
# author's build would: re-run configure with the same arguments plus it.
test-configured: configured
	@grep -qw hello $(BUILDDIR)/Makefile.vars || \
	  eval ./configure $$(cat $(BUILDDIR)/configure.args) --builddir=$(BUILDDIR) --add-module=$(HELLO_MODULE)

test: deps
	@$(MAKE) --no-print-directory test-configured
	@$(MAKE) --no-print-directory $(SUBMAKE_JOBS) -f Makefile BUILDDIR=$(BUILDDIR) $(BUILDDIR)/sluice \
	  $(BUILDDIR)/unit_tests $(BUILDDIR)/integration_tests $(BUILDDIR)/test_upstream
	@BUILDDIR=$(BUILDDIR) sh t/run.sh

unit: test-configured
	@$(MAKE) --no-print-directory $(SUBMAKE_JOBS) -f Makefile BUILDDIR=$(BUILDDIR) $(BUILDDIR)/unit_tests
	$(BUILDDIR)/unit_tests

fuzz:
	@sh t/fuzz/run.sh $(FUZZ_SECONDS)

bench:
	@sh contrib/bench/run.sh $(if $(QUICK),--quick)

clean:
	rm -rf $(BUILDDIR)

-include $(OBJS:.o=.d) $(UNIT_OBJS:.o=.d) $(INTEGRATION_OBJS:.o=.d) $(MAIN_OBJ:.o=.d)
