//! The `portsyncd` command line: its `--help` (the parsing is the
//! engine's, [`crate::engine::runtime::cli`]).

/// The `--help` text.
pub const HELP: &str = "\
portsyncd — SONiC port state sync daemon

Keeps SONiC's Redis in step with the kernel's view of the switch ports, as a
drop-in replacement for SONiC's C++ portsyncd: STATE_DB PORT_TABLE|<port>
follows every link change (state, netdev_oper_status, admin_status, mtu), and
at start-up CONFIG_DB PORT is pushed to APPL_DB PORT_TABLE with the
PortConfigDone / PortInitDone handshake orchagent waits for.

USAGE:
    portsyncd [OPTIONS]
    portsyncd check [--json] [-n NS] [-c FILE] [-s SECTION.KEY=VALUE]...
    portsyncd sysctl-check [FILE]

OPTIONS:
    -c, --config FILE            TOML configuration file
                                 (default /etc/sonic/portsyncd.conf; when the
                                 default file is missing, built-in defaults)
    -s, --set SECTION.KEY=VALUE  set one key; repeatable; wins over the
                                 environment and the file
    -n, --namespace NS           from the host of a multi-ASIC switch: run in
                                 network namespace NS (/var/run/netns/NS) with
                                 the databases database_global.json lists for
                                 it; same as --set runtime.namespace=NS. Not
                                 needed inside an ASIC's container
        --print-config           print the effective configuration and exit
    -h, --help                   print this help
    -V, --version                print the version

    check [--json]               compare STATE_DB PORT_TABLE with the kernel's
                                 links in this network namespace (or NS's),
                                 once, with the daemon's configuration
                                 (database_config, timeout_ms, namespace);
                                 reads only. Prints one line per port out of
                                 step, then a summary; --json prints one JSON
                                 document instead. Exits 0 all in step, 1
                                 some port differs, 2 cannot check
    sysctl-check [FILE]          compare live kernel settings with the
                                 shipped profile (default
                                 /etc/sysctl.d/99-portsyncd.conf); exits 1 on drift

ENVIRONMENT:
    PORTSYNCD_<SECTION>_<KEY>=VALUE sets any key, e.g.
    PORTSYNCD_NETLINK_RCVBUF_BYTES=33554432 or PORTSYNCD_RUNTIME_REACTOR=epoll.
    Precedence: --set > environment > file > default.

KEYS (default):
  [redis]
    database_config     SONiC database_config.json
                        (\"/var/run/redis/sonic-db/database_config.json\");
                        the unix socket is used when it exists, else TCP
    database_global_config
                        SONiC database_global.json, read only with a
                        namespace: its INCLUDES give each namespace's
                        database_config.json
                        (\"/var/run/redis/sonic-db/database_global.json\")
    write_buffer_bytes  bound on bytes queued per Redis connection (4194304)
    retry_min_ms        first reconnect delay, doubling on failure (50)
    retry_max_ms        reconnect delay cap (2000)
    timeout_ms          start-up request timeout (5000)
    port_table_poll_ms  re-check of netdevs not yet in APPL_DB PORT_TABLE when
                        keyspace notifications are off (250)
  [netlink]
    rcvbuf_bytes        netlink receive buffer, SO_RCVBUFFORCE (16777216)
    ring_bytes          mlocked receive ring (4194304)
    max_batch_datagrams datagrams read per loop turn before writing (1024)
  [runtime]
    namespace           network namespace to enter before any socket is
                        opened (the metrics listener's too), databases from
                        database_global_config; \"\" stays where started,
                        databases from database_config (\"\")
    reactor             \"epoll\" | \"io_uring\" | \"auto\" (\"epoll\")
    cpu                 pin the loop thread to this CPU (unset)
    sched               \"other\" | \"fifo:PRIO\" | \"rr:PRIO\"; unset keeps
                        the inherited policy, e.g. systemd's (unset)
    mlock_all           mlockall current and future memory (false)
    strict              exit 2 when cpu/sched/mlock (or metrics listen/cpu) is
                        refused, instead of a warning (false)
    coalesce_us         in a burst, sleep this long between loop turns so each
                        takes a bigger batch (one turn in four); 0 turns it
                        off (200)
    busy_poll           never sleep in the reactor; starves other work on the
                        core, see README (false)
  [metrics]
    listen              Prometheus endpoint, \"\" disables (\"127.0.0.1:29101\")
    cpu                 pin the metrics thread to this CPU (unset)
    log_interval_s      seconds between summary log lines, 0 disables (60)
  [log]
    level               error | warn | notice | info | debug (\"notice\")
    output              \"auto\" | \"syslog\" | \"stderr\": auto is the
                        journal's stderr under systemd, else syslog when
                        /dev/log exists, else stderr (\"auto\")
                        CONFIG_DB LOGGER|portsyncd LOGLEVEL / LOGOUTPUT
                        override both when set to other than SONiC's
                        NOTICE / SYSLOG, or changed while running
  [verify]
    interval_s          seconds between self-verifications: a kernel dump and
                        a read-back of what it owns in STATE_DB, differences
                        repaired and counted; 0 disables (60)

SIGNALS:
    SIGTERM, SIGINT     finish the batch in flight and exit 0
    SIGHUP              reload the log level and output and the metrics
                        interval

EXIT STATUS:
    0 stopped by a signal; 1 runtime failure; 2 bad command line or configuration
    (an unknown namespace or a missing /var/run/netns/NS too)
    check: 0 all in step; 1 a port differs; 2 cannot check (configuration,
    Redis not answering within redis.timeout_ms, netlink)
";
