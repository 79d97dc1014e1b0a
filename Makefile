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
INTEGRATION_OBJS := $(patsubst %.cc,$(BUILDDIR)/%.o,$(sort $(wildcard t/integration/*.cc)) t/lib/harness.cc t/lib/test_pki.cc t/lib/tls_client.cc)
TEST_LIBS := -lgtest -lgtest_main -pthread
$(INTEGRATION_OBJS): CXXFLAGS += -It/lib
HELLO_MODULE := contrib/modules/hello

.PHONY: all build run test unit integration bench fuzz soak install uninstall clean deps configured

# Build with every core unless the caller chose (make -jN).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(filter -j%,$(MAKEFLAGS)),)
SUBMAKE_JOBS = -j$(JOBS)
endif

all: build

deps:
	@sh contrib/deps.sh

# Runs ./configure with defaults when this build directory has none yet, and
# again with the arguments it was given when configure or a module's config
# file changed since (a pull that adds a bundled module compiles it in).
$(BUILDDIR)/Makefile.vars: configure $(wildcard modules/*/config)
	@if [ -f $(BUILDDIR)/configure.args ]; then \
	  echo "configure changed: ./configure$$(cat $(BUILDDIR)/configure.args)"; \
	  eval ./configure $$(cat $(BUILDDIR)/configure.args); \
	else ./configure --builddir=$(BUILDDIR); fi

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
	$(CXX) $(LDFLAGS) -o $@ $^ -lssl -lcrypto $(TEST_LIBS) -lz

$(BUILDDIR)/test_upstream: $(BUILDDIR)/t/lib/test_upstream.o
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILDDIR)/test_dns: $(BUILDDIR)/t/lib/test_dns.o
	$(CXX) $(LDFLAGS) -o $@ $^ $(LIBS)

# `make run`: install what is missing, build, and serve conf/sluice.conf in the foreground.
run: deps
	@$(MAKE) --no-print-directory build
	@mkdir -p logs
	@echo "sluice listens on http://127.0.0.1:8080/ (static site) and http://127.0.0.1:8081/ (demo API,"
	@echo "proxied to its backend on 127.0.0.1:8082)"
	@echo "try:  curl -i http://127.0.0.1:8080/"
	@echo "      curl -i http://127.0.0.1:8081/api/items"
	@echo "      curl -i http://127.0.0.1:8081/api/items/42"
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
	  $(BUILDDIR)/unit_tests $(BUILDDIR)/integration_tests $(BUILDDIR)/test_upstream $(BUILDDIR)/test_dns
	@BUILDDIR=$(BUILDDIR) sh t/run.sh

unit: test-configured
	@$(MAKE) --no-print-directory $(SUBMAKE_JOBS) -f Makefile BUILDDIR=$(BUILDDIR) $(BUILDDIR)/unit_tests
	$(BUILDDIR)/unit_tests

fuzz:
	@sh t/fuzz/run.sh $(FUZZ_SECONDS)

bench:
	@sh contrib/bench/run.sh $(if $(QUICK),--quick)

# A long run under load that shows whether worker memory stays flat (not in `make test`).
soak: build $(BUILDDIR)/test_upstream
	@BUILDDIR=$(BUILDDIR) SOAK_SECONDS=$(or $(SOAK_SECONDS),600) sh t/soak/run.sh

# ---- installation (packagers: ./configure --prefix=/usr && make && make install DESTDIR=...) ----
CONF_DIR = $(patsubst %/,%,$(dir $(CONF_PATH)))
LOG_DIR = $(patsubst %/,%,$(dir $(ERROR_LOG_PATH)))
# The installed configuration names the configured paths, not the source tree's logs/.
INSTALL_CONF_SED = -e 's|logs/error.log|$(ERROR_LOG_PATH)|' -e 's|logs/access.log|$(HTTP_LOG_PATH)|' \
	-e 's|logs/sluice.pid|$(PID_PATH)|'
PATHS_SED = -e 's|@SBIN_PATH@|$(SBIN_PATH)|g' -e 's|@CONF_PATH@|$(CONF_PATH)|g' \
	-e 's|@PID_PATH@|$(PID_PATH)|g' -e 's|@LOG_DIR@|$(LOG_DIR)|g'

$(BUILDDIR)/sluice.service: contrib/systemd/sluice.service.in $(BUILDDIR)/Makefile.vars
	sed $(PATHS_SED) $< > $@
$(BUILDDIR)/sluice.logrotate: contrib/logrotate/sluice.in $(BUILDDIR)/Makefile.vars
	sed $(PATHS_SED) $< > $@

# Configuration files are installed as NAME.default, and as NAME only where
# none exists yet: an upgrade never overwrites a sysadmin's edits.
install: build $(BUILDDIR)/sluice.service $(BUILDDIR)/sluice.logrotate
	install -d '$(DESTDIR)$(dir $(SBIN_PATH))' '$(DESTDIR)$(CONF_DIR)' '$(DESTDIR)$(RUN_PREFIX)/html' \
	  '$(DESTDIR)$(LOG_DIR)' '$(DESTDIR)$(dir $(HTTP_LOG_PATH))' '$(DESTDIR)$(HTTP_CACHE_PATH)' \
	  '$(DESTDIR)$(HTTP_CLIENT_BODY_TEMP_PATH)' '$(DESTDIR)$(MAN_DIR)/man8' '$(DESTDIR)$(MAN_DIR)/man5'
	install -m 0755 $(BUILDDIR)/sluice '$(DESTDIR)$(SBIN_PATH)'
	sed $(INSTALL_CONF_SED) conf/sluice.conf > $(BUILDDIR)/sluice.conf.default
	install -m 0644 $(BUILDDIR)/sluice.conf.default '$(DESTDIR)$(CONF_PATH).default'
	install -m 0644 conf/mime.types '$(DESTDIR)$(CONF_DIR)/mime.types.default'
	test -e '$(DESTDIR)$(CONF_PATH)' || install -m 0644 $(BUILDDIR)/sluice.conf.default '$(DESTDIR)$(CONF_PATH)'
	test -e '$(DESTDIR)$(CONF_DIR)/mime.types' || install -m 0644 conf/mime.types '$(DESTDIR)$(CONF_DIR)/mime.types'
	install -d '$(DESTDIR)$(CONF_DIR)/examples'
	install -m 0644 conf/examples/*.conf '$(DESTDIR)$(CONF_DIR)/examples/'
	cp -R html/. '$(DESTDIR)$(RUN_PREFIX)/html/'
	install -m 0644 man/sluice.8 '$(DESTDIR)$(MAN_DIR)/man8/sluice.8'
	install -m 0644 man/sluice.conf.5 '$(DESTDIR)$(MAN_DIR)/man5/sluice.conf.5'
	if [ -n '$(SYSTEMD_DIR)' ]; then install -d '$(DESTDIR)$(SYSTEMD_DIR)' && \
	  install -m 0644 $(BUILDDIR)/sluice.service '$(DESTDIR)$(SYSTEMD_DIR)/sluice.service'; fi
	if [ -n '$(LOGROTATE_DIR)' ]; then install -d '$(DESTDIR)$(LOGROTATE_DIR)' && \
	  install -m 0644 $(BUILDDIR)/sluice.logrotate '$(DESTDIR)$(LOGROTATE_DIR)/sluice'; fi

# Removes what install put in place except configuration, logs and cache.
uninstall: configured
	rm -f '$(DESTDIR)$(SBIN_PATH)' '$(DESTDIR)$(MAN_DIR)/man8/sluice.8' '$(DESTDIR)$(MAN_DIR)/man5/sluice.conf.5'
	if [ -n '$(SYSTEMD_DIR)' ]; then rm -f '$(DESTDIR)$(SYSTEMD_DIR)/sluice.service'; fi
	if [ -n '$(LOGROTATE_DIR)' ]; then rm -f '$(DESTDIR)$(LOGROTATE_DIR)/sluice'; fi

clean:
	rm -rf $(BUILDDIR)

-include $(OBJS:.o=.d) $(UNIT_OBJS:.o=.d) $(INTEGRATION_OBJS:.o=.d) $(MAIN_OBJ:.o=.d)
