# Build, install and uninstall portsyncd.
#
#   make                          release build (cargo build --release)
#   sudo make install             binaries, systemd unit, sysctl profile,
#                                 example config
#   sudo make uninstall           remove exactly what install placed
#   make install DESTDIR=/tmp/p   stage into a directory (packaging)
#
# Where things go (override on the command line):
#   $(BINDIR)      portsyncd, portsyncd-flood        /usr/local/bin
#   $(UNITDIR)     portsyncd.service                 /usr/local/lib/systemd/system
#   $(SYSCTLDIR)   99-portsyncd.conf                 /etc/sysctl.d
#   $(CONFDIR)     portsyncd.conf.example            /etc/sonic
#
# The unit goes to $(PREFIX)/lib/systemd/system, which systemd searches
# (`systemd-analyze unit-paths`), and not to /etc/systemd/system: that
# directory is the administrator's, for drop-ins (`systemctl edit
# portsyncd`) that survive a reinstall. Its ExecStart= is rewritten to
# $(BINDIR)/portsyncd. The sysctl profile and the config live under /etc
# whatever PREFIX is: `portsyncd sysctl-check` and the daemon look there.
# The live config, $(CONFDIR)/portsyncd.conf, is never written or removed.
#
# install builds first when cargo is on the PATH (a no-op when the build is
# up to date); under sudo without cargo it installs the existing build from
# $(RELEASE). NO_BUILD=1 never runs cargo and installs what $(RELEASE)
# holds (the tests use it: a nested cargo build would relink the binaries
# other tests are running). After installing:
#   systemctl daemon-reload
#   sysctl -p /etc/sysctl.d/99-portsyncd.conf && portsyncd sysctl-check
#   systemctl enable --now portsyncd

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
SYSCTLDIR  ?= $(SYSCONFDIR)/sysctl.d
CONFDIR    ?= $(SYSCONFDIR)/sonic
DESTDIR    ?=

CARGO            ?= cargo
CARGO_TARGET_DIR ?= target
RELEASE          ?= $(CARGO_TARGET_DIR)/release

INSTALL ?= install

INSTALLED = \
	$(DESTDIR)$(BINDIR)/portsyncd \
	$(DESTDIR)$(BINDIR)/portsyncd-flood \
	$(DESTDIR)$(UNITDIR)/portsyncd.service \
	$(DESTDIR)$(SYSCTLDIR)/99-portsyncd.conf \
	$(DESTDIR)$(CONFDIR)/portsyncd.conf.example

.PHONY: all build install uninstall

all: build

build:
ifeq ($(NO_BUILD),)
	@if command -v $(CARGO) >/dev/null 2>&1; then \
		echo "$(CARGO) build --release --locked --bins"; \
		$(CARGO) build --release --locked --bins; \
	elif [ -x $(RELEASE)/portsyncd ] && [ -x $(RELEASE)/flood ]; then \
		echo "make: $(CARGO) not found; installing the build in $(RELEASE)"; \
	else \
		echo "make: $(CARGO) not found and nothing built in $(RELEASE); run make as the user who builds first" >&2; \
		exit 1; \
	fi
else
	@for b in portsyncd flood; do \
		[ -x $(RELEASE)/$$b ] || { echo "make: NO_BUILD set and no $(RELEASE)/$$b" >&2; exit 1; }; \
	done
endif

install: build
	$(INSTALL) -D -m 0755 $(RELEASE)/portsyncd $(DESTDIR)$(BINDIR)/portsyncd
	$(INSTALL) -D -m 0755 $(RELEASE)/flood $(DESTDIR)$(BINDIR)/portsyncd-flood
	$(INSTALL) -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's#^ExecStart=/usr/local/bin/portsyncd$$#ExecStart=$(BINDIR)/portsyncd#' \
		-e 's#^ExecStart=/usr/local/bin/portsyncd #ExecStart=$(BINDIR)/portsyncd #' \
		systemd/portsyncd.service > $(DESTDIR)$(UNITDIR)/portsyncd.service.tmp
	grep -Eq '^ExecStart=$(BINDIR)/portsyncd( |$$)' $(DESTDIR)$(UNITDIR)/portsyncd.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/portsyncd.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/portsyncd.service.tmp $(DESTDIR)$(UNITDIR)/portsyncd.service
	$(INSTALL) -D -m 0644 sysctl/99-portsyncd.conf $(DESTDIR)$(SYSCTLDIR)/99-portsyncd.conf
	$(INSTALL) -D -m 0644 config/portsyncd.conf.example $(DESTDIR)$(CONFDIR)/portsyncd.conf.example

uninstall:
	rm -f $(INSTALLED)
