# Build, install and uninstall the daemons (portsyncd, neighsyncd).
#
#   make                          release build (cargo build --release)
#   sudo make install             binaries, systemd unit, sysctl profile,
#                                 example config
#   sudo make uninstall           remove exactly what install placed
#   make install DESTDIR=/tmp/p   stage into a directory (packaging)
#   make deb                      target/debian/sonic-syncd_<version>_<arch>.deb
#                                 (see "Debian package" below)
#
# Where things go (override on the command line):
#   $(BINDIR)      portsyncd, neighsyncd, portsyncd-flood  /usr/local/bin
#   $(UNITDIR)     portsyncd.service, neighsyncd.service   /usr/local/lib/systemd/system
#   $(SYSCTLDIR)   99-portsyncd.conf                       /etc/sysctl.d
#   $(CONFDIR)     portsyncd.conf.example,                 /etc/sonic
#                  neighsyncd.conf.example
#
# The unit goes to $(PREFIX)/lib/systemd/system, which systemd searches
# (`systemd-analyze unit-paths`), and not to /etc/systemd/system: that
# directory is the administrator's, for drop-ins (`systemctl edit
# portsyncd`) that survive a reinstall. Its ExecStart= is rewritten to
# $(BINDIR)/portsyncd. The sysctl profile and the config live under /etc
# whatever PREFIX is: `portsyncd sysctl-check` and the daemon look there.
# The live configs, $(CONFDIR)/<daemon>.conf, are never written or removed.
#
# install builds first when cargo is on the PATH (a no-op when the build is
# up to date); under sudo without cargo it installs the existing build from
# $(RELEASE). NO_BUILD=1 never runs cargo and installs what $(RELEASE)
# holds (the tests use it: a nested cargo build would relink the binaries
# other tests are running). After installing:
#   systemctl daemon-reload
#   sysctl -p /etc/sysctl.d/99-portsyncd.conf && portsyncd sysctl-check
#   systemctl enable --now portsyncd neighsyncd

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

# The daemons: one per src/bin/*.rs, each with systemd/<d>.service and
# config/<d>.conf.example.
DAEMONS := $(sort $(basename $(notdir $(wildcard src/bin/*.rs))))

INSTALLED = \
	$(foreach d,$(DAEMONS),$(DESTDIR)$(BINDIR)/$(d) $(DESTDIR)$(UNITDIR)/$(d).service $(DESTDIR)$(CONFDIR)/$(d).conf.example) \
	$(DESTDIR)$(BINDIR)/portsyncd-flood \
	$(DESTDIR)$(SYSCTLDIR)/99-portsyncd.conf

.PHONY: all build install uninstall deb cargo-deb

all: build

build:
ifeq ($(NO_BUILD),)
	@if command -v $(CARGO) >/dev/null 2>&1; then \
		echo "$(CARGO) build --release --locked --bins"; \
		$(CARGO) build --release --locked --bins; \
	elif [ -x $(RELEASE)/portsyncd ] && [ -x $(RELEASE)/neighsyncd ] && [ -x $(RELEASE)/flood ]; then \
		echo "make: $(CARGO) not found; installing the build in $(RELEASE)"; \
	else \
		echo "make: $(CARGO) not found and nothing built in $(RELEASE); run make as the user who builds first" >&2; \
		exit 1; \
	fi
else
	@for b in $(DAEMONS) flood; do \
		[ -x $(RELEASE)/$$b ] || { echo "make: NO_BUILD set and no $(RELEASE)/$$b" >&2; exit 1; }; \
	done
endif

install: build
	$(INSTALL) -d -m 0755 $(DESTDIR)$(UNITDIR)
	@set -e; for d in $(DAEMONS); do \
		echo "install $$d"; \
		$(INSTALL) -D -m 0755 $(RELEASE)/$$d $(DESTDIR)$(BINDIR)/$$d; \
		sed -e "s#^ExecStart=/usr/local/bin/$$d\$$#ExecStart=$(BINDIR)/$$d#" \
			-e "s#^ExecStart=/usr/local/bin/$$d #ExecStart=$(BINDIR)/$$d #" \
			systemd/$$d.service > $(DESTDIR)$(UNITDIR)/$$d.service.tmp; \
		grep -Eq "^ExecStart=$(BINDIR)/$$d( |\$$)" $(DESTDIR)$(UNITDIR)/$$d.service.tmp; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$d.service.tmp; \
		mv -f $(DESTDIR)$(UNITDIR)/$$d.service.tmp $(DESTDIR)$(UNITDIR)/$$d.service; \
		$(INSTALL) -D -m 0644 config/$$d.conf.example $(DESTDIR)$(CONFDIR)/$$d.conf.example; \
	done
	$(INSTALL) -D -m 0755 $(RELEASE)/flood $(DESTDIR)$(BINDIR)/portsyncd-flood
	$(INSTALL) -D -m 0644 sysctl/99-portsyncd.conf $(DESTDIR)$(SYSCTLDIR)/99-portsyncd.conf

uninstall:
	rm -f $(INSTALLED)

# --- Debian package ------------------------------------------------------
#
# `make deb` writes target/debian/sonic-syncd_<version>-1_<arch>.deb and its
# -dbgsym .ddeb (line tables, for perf), with cargo-deb from the release
# build; `dpkg -i` it. What goes where is [package.metadata.deb] in
# Cargo.toml: the crate's binaries (the daemons) and flood as
# portsyncd-flood in /usr/bin, the units in /usr/lib/systemd/system,
# man pages in section 8, the sysctl profile and the example configs under
# /etc as conffiles. The output stays in this checkout's target/debian even
# when CARGO_TARGET_DIR is elsewhere (Cargo.toml names the staged files
# there).
#
# The daemons are src/bin/*.rs, found by name. For each, this stages
#   target/debian/units/<daemon>.service  systemd/<daemon>.service with
#                                         ExecStart= at /usr/bin/<daemon>
#                                         (the rewrite install does)
#   target/debian/man/<daemon>.8          docs/man/<daemon>.8, or made from
#                                         its --help (tools/man-from-help)
# and checks that Cargo.toml's systemd-units names it.
#
# cargo-deb comes from crates.io at the pinned version when it is missing
# (`make cargo-deb`; tools/install-deps runs that too).

CARGO_DEB_VERSION = 3.8.0
DEBDIR  := target/debian

cargo-deb:
	@if [ "$$($(CARGO) deb --version 2>/dev/null)" != "cargo-deb $(CARGO_DEB_VERSION)" ]; then \
		echo "$(CARGO) install --locked cargo-deb --version $(CARGO_DEB_VERSION)"; \
		$(CARGO) install --locked cargo-deb --version $(CARGO_DEB_VERSION); \
	fi

deb: build cargo-deb
	rm -rf $(DEBDIR)/units $(DEBDIR)/man
	mkdir -p $(DEBDIR)/units $(DEBDIR)/man
	@for d in $(DAEMONS); do \
		unit=systemd/$$d.service; \
		[ -f $$unit ] || { echo "make: src/bin/$$d.rs has no $$unit" >&2; exit 1; }; \
		sed -e "s#^ExecStart=/usr/local/bin/$$d\$$#ExecStart=/usr/bin/$$d#" \
			-e "s#^ExecStart=/usr/local/bin/$$d #ExecStart=/usr/bin/$$d #" \
			$$unit > $(DEBDIR)/units/$$d.service; \
		grep -Eq "^ExecStart=/usr/bin/$$d( |\$$)" $(DEBDIR)/units/$$d.service || \
			{ echo "make: $$unit: ExecStart= is not /usr/local/bin/$$d" >&2; exit 1; }; \
		grep -Eq "^[[:space:]]*\\{ *unit-name = \"$$d\"" Cargo.toml || \
			{ echo "make: add $$d to systemd-units in Cargo.toml [package.metadata.deb]" >&2; exit 1; }; \
		if [ -f docs/man/$$d.8 ]; then \
			cp docs/man/$$d.8 $(DEBDIR)/man/; \
		else \
			echo "make: no docs/man/$$d.8; making one from $$d --help"; \
			tools/man-from-help $$d $(RELEASE)/$$d > $(DEBDIR)/man/$$d.8; \
		fi; \
	done
	cp docs/man/portsyncd-flood.8 $(DEBDIR)/man/
	rm -f $(DEBDIR)/*.deb $(DEBDIR)/*.ddeb
	$(CARGO) deb --locked --no-build --output $(DEBDIR)/
