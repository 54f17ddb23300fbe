//! The `neighsyncd` command line: its `--help` (the parsing is the
//! engine's, [`crate::engine::runtime::cli`]).

/// The `--help` text.
pub const HELP: &str = "\
neighsyncd — SONiC neighbor sync daemon

Keeps APPL_DB NEIGH_TABLE in step with the kernel's ARP and ND tables, as a
drop-in replacement for SONiC's C++ neighsyncd: every neighbor change is
written through the ProducerStateTable (keys <interface>:<ip>, fields neigh
and family) by SONiC's rules, with SONiC's warm restart (restore_count,
NEIGH_RESTORE_TABLE, the reconcile timer, SAME/NEW/STALE/DELETE). Lost
kernel messages are recovered by a dump and a reconciliation.

USAGE:
    neighsyncd [OPTIONS]
    neighsyncd check [--json] [-n NS] [-c FILE] [-s SECTION.KEY=VALUE]...
    neighsyncd sysctl-check [FILE]

OPTIONS:
    -c, --config FILE            TOML configuration file
                                 (default /etc/sonic/neighsyncd.conf; when the
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

    check [--json]               compare APPL_DB NEIGH_TABLE with the kernel's
                                 neighbors in this network namespace (or
                                 NS's), by SONiC's rules and CONFIG_DB, once;
                                 reads only. Prints one line per neighbor out
                                 of step, then a summary; --json prints one
                                 JSON document. Exits 0 all in step, 1 some
                                 neighbor differs, 2 cannot check
    sysctl-check [FILE]          compare live kernel settings with the
                                 shipped profile (default
                                 /etc/sysctl.d/99-portsyncd.conf); exits 1 on drift

ENVIRONMENT:
    NEIGHSYNCD_<SECTION>_<KEY>=VALUE sets any key, e.g.
    NEIGHSYNCD_NETLINK_RCVBUF_BYTES=33554432 or NEIGHSYNCD_WARM_RESTORE_TIMEOUT_S=60.
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
    write_buffer_bytes  bound on bytes queued per Redis connection (1048576)
    retry_min_ms        first reconnect delay, doubling on failure (50)
    retry_max_ms        reconnect delay cap (2000)
    timeout_ms          start-up request timeout (5000)
    port_table_poll_ms  portsyncd's; not used by neighsyncd, which reads
                        CONFIG_DB again every 10 s besides its keyspace
                        notifications (250)
  [netlink]
    rcvbuf_bytes        netlink receive buffer, SO_RCVBUFFORCE (16777216)
    ring_bytes          mlocked receive ring (2097152)
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
                        takes a bigger batch (every turn; one change at a
                        time is never delayed); 0 turns it off (1000)
    busy_poll           never sleep in the reactor; starves other work on the
                        core, see README (false)
  [metrics]
    listen              Prometheus endpoint, \"\" disables (\"127.0.0.1:29102\")
    cpu                 pin the metrics thread to this CPU (unset)
    log_interval_s      seconds between summary log lines, 0 disables (60)
  [log]
    level               error | warn | notice | info | debug (\"notice\")
    output              \"auto\" | \"syslog\" | \"stderr\": auto is the
                        journal's stderr under systemd, else syslog when
                        /dev/log exists, else stderr (\"auto\")
                        CONFIG_DB LOGGER|neighsyncd LOGLEVEL / LOGOUTPUT
                        override both when set to other than SONiC's
                        NOTICE / SYSLOG, or changed while running
  [verify]
    interval_s          seconds between self-verifications: links and
                        neighbors dumped again (every neighbor decided
                        again) and APPL_DB NEIGH_TABLE read back, what
                        differs repaired and counted; 0 disables (60)
  [warm]
    restore_timeout_s   warm start: how long to wait for STATE_DB
                        NEIGH_RESTORE_TABLE|Flags restored before exiting 1
                        (180, as SONiC)

SIGNALS:
    SIGTERM, SIGINT     finish the batch in flight and exit 0
    SIGHUP              reload the log level and output and the metrics
                        interval

EXIT STATUS:
    0 stopped by a signal; 1 runtime failure; 2 bad command line or configuration
    (an unknown namespace or a missing /var/run/netns/NS too)
    1 also: warm start and the restore flag did not come in time
    check: 0 all in step; 1 a neighbor differs; 2 cannot check (configuration,
    Redis not answering within redis.timeout_ms, netlink)
";
