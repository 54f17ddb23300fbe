//! Configuration: precedence, and errors that name key, value and origin.

use super::*;

fn env(vars: &[(&str, &str)]) -> Vec<Override> {
    Override::from_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

fn err(text: &str, overrides: &[Override]) -> String {
    Config::from_parts(Some(Path::new("/etc/p.conf")), text, overrides)
        .unwrap_err()
        .0
}

#[test]
fn defaults() {
    let c = Config::from_parts(None, "", &[]).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.netlink.rcvbuf_bytes, 16_777_216);
    assert_eq!(c.redis.database_config, Path::new(DEFAULT_DATABASE_CONFIG));
    assert_eq!(c.runtime.reactor, ReactorKind::Epoll);
    assert_eq!(c.metrics.listen.0.unwrap().to_string(), "127.0.0.1:29101");
}

#[test]
fn flag_beats_environment_beats_file() {
    let file = "[netlink]\nrcvbuf_bytes = 1048576\nring_bytes = 65536\n";
    let c = Config::from_parts(None, file, &[]).unwrap();
    assert_eq!(
        (c.netlink.rcvbuf_bytes, c.netlink.ring_bytes),
        (1_048_576, 65_536)
    );
    let mut o = env(&[
        ("PORTSYNCD_NETLINK_RCVBUF_BYTES", "2097152"),
        ("HOME", "/root"),
    ]);
    let c = Config::from_parts(None, file, &o).unwrap();
    assert_eq!(
        (c.netlink.rcvbuf_bytes, c.netlink.ring_bytes),
        (2_097_152, 65_536)
    );
    o.push(Override::from_flag("netlink.rcvbuf_bytes=4194304").unwrap());
    let c = Config::from_parts(None, file, &o).unwrap();
    assert_eq!(c.netlink.rcvbuf_bytes, 4_194_304);
}

#[test]
fn environment_values_need_no_toml_quoting() {
    let o = env(&[
        ("PORTSYNCD_RUNTIME_REACTOR", "io_uring"),
        ("PORTSYNCD_RUNTIME_SCHED", "fifo:50"),
        ("PORTSYNCD_RUNTIME_MLOCK_ALL", "true"),
        ("PORTSYNCD_METRICS_LISTEN", ""),
        ("PORTSYNCD_REDIS_DATABASE_CONFIG", "/tmp/db.json"),
        ("PORTSYNCD_LOG_LEVEL", "\"debug\""),
    ]);
    let c = Config::from_parts(None, "", &o).unwrap();
    assert_eq!(c.runtime.reactor, ReactorKind::IoUring);
    assert_eq!(c.runtime.sched, Some(Sched::Fifo(50)));
    assert!(c.runtime.mlock_all);
    assert_eq!(c.metrics.listen, Listen(None));
    assert_eq!(c.redis.database_config, Path::new("/tmp/db.json"));
    assert_eq!(c.log.level, LogLevel(Level::Debug));
}

#[test]
fn file_errors_name_the_file_key_and_value() {
    let e = err("[netlink]\nrcvbuf_bytes = \"big\"\n", &[]);
    assert!(
        e.contains("/etc/p.conf") && e.contains("rcvbuf_bytes") && e.contains("\"big\""),
        "{e}"
    );
    let e = err("[netlink]\nrcvbuf = 1\n", &[]);
    assert!(e.contains("unknown field `rcvbuf`"), "{e}");
    let e = err("[netlnk]\n", &[]);
    assert!(e.contains("netlnk"), "{e}");
    let e = err("[runtime]\nreactor = \"kqueue\"\n", &[]);
    assert!(e.contains("kqueue") && e.contains("reactor"), "{e}");
    let e = err("this is not toml", &[]);
    assert!(e.contains("/etc/p.conf") && e.contains("line 1"), "{e}");
    let e = err("[runtime]\nsched = \"fifo:0\"\n", &[]);
    assert!(e.contains("fifo:0") && e.contains("PRIO 1-99"), "{e}");
    let e = err("[metrics]\nlisten = \"localhost\"\n", &[]);
    assert!(e.contains("\"localhost\"") && e.contains("IP:PORT"), "{e}");
}

#[test]
fn range_errors_name_key_value_and_bounds() {
    let e = err("[netlink]\nrcvbuf_bytes = 10\n", &[]);
    assert_eq!(
        e,
        "netlink.rcvbuf_bytes = 10: out of range, must be between 4096 and 1073741824"
    );
    let e = err("[redis]\nretry_min_ms = 500\nretry_max_ms = 100\n", &[]);
    assert!(
        e.contains("redis.retry_max_ms = 100") && e.contains("retry_min_ms = 500"),
        "{e}"
    );
    let e = err("[runtime]\ncpu = 4096\n", &[]);
    assert!(e.starts_with("runtime.cpu = 4096: out of range"), "{e}");
    let e = err("[netlink]\nmax_batch_datagrams = 0\n", &[]);
    assert!(e.starts_with("netlink.max_batch_datagrams = 0"), "{e}");
}

#[test]
fn override_errors_name_their_origin() {
    let o = env(&[("PORTSYNCD_NETLINK_RCVBUF_BYTES", "lots")]);
    let e = err("", &o);
    assert!(
        e.contains("environment variable PORTSYNCD_NETLINK_RCVBUF_BYTES"),
        "{e}"
    );
    assert!(
        e.contains("netlink.rcvbuf_bytes") && e.contains("lots"),
        "{e}"
    );
    let o = env(&[("PORTSYNCD_NETLINK_BOGUS", "1")]);
    let e = err("", &o);
    assert!(
        e.contains("PORTSYNCD_NETLINK_BOGUS") && e.contains("unknown field `bogus`"),
        "{e}"
    );
    let o = vec![Override::from_flag("nosuch.key=1").unwrap()];
    let e = err("", &o);
    assert!(
        e.contains("--set nosuch.key=1") && e.contains("nosuch"),
        "{e}"
    );
}

/// Issue 11: `PORTSYNCD_BIN` (a path some other tool reads) made the daemon
/// exit 2. Variables that are not `<SECTION>_<KEY>` of one of our sections
/// are set aside by name, for a warning; a known section still errors on
/// an unknown key (above).
#[test]
fn unrelated_portsyncd_variables_are_set_aside_not_refused() {
    let vars = [
        ("PORTSYNCD_BIN", "/usr/bin/portsyncd"),
        ("PORTSYNCD_X", "1"),
        ("PORTSYNCD_FOO_BAR", "1"),
        ("PORTSYNCD_NETLINK_RCVBUF_BYTES", "2097152"),
        ("PORTSYNCD_METRICS_BOGUS", "1"),
        ("PATH", "/bin"),
    ];
    let (o, ignored) =
        Override::split_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    assert_eq!(
        ignored,
        vec!["PORTSYNCD_BIN", "PORTSYNCD_FOO_BAR", "PORTSYNCD_X"]
    );
    let names: Vec<&str> = o.iter().map(|o| o.origin.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "environment variable PORTSYNCD_METRICS_BOGUS",
            "environment variable PORTSYNCD_NETLINK_RCVBUF_BYTES"
        ]
    );
    let e = err("", &o);
    assert!(
        e.contains("PORTSYNCD_METRICS_BOGUS") && e.contains("unknown field `bogus`"),
        "{e}"
    );
    let sections = Config::sections();
    for s in ["redis", "netlink", "runtime", "metrics", "log"] {
        assert!(sections.iter().any(|k| k == s), "{s} in {sections:?}");
    }
}

#[test]
fn a_given_file_must_exist_the_default_may_not() {
    let e = Config::load(&ConfigFile::Given("/nonexistent/p.conf".into()), &[])
        .unwrap_err()
        .0;
    assert!(e.contains("/nonexistent/p.conf"), "{e}");
    if !Path::new(default_config_path()).exists() {
        assert_eq!(
            Config::load(&ConfigFile::Default, &[]).unwrap(),
            Config::default()
        );
    }
}

#[test]
fn printed_config_reads_back_the_same() {
    let o = env(&[
        ("PORTSYNCD_RUNTIME_SCHED", "rr:10"),
        ("PORTSYNCD_RUNTIME_CPU", "0"),
    ]);
    let c = Config::from_parts(None, "", &o).unwrap();
    let again = Config::from_parts(None, &c.to_toml(), &[]).unwrap();
    assert_eq!(c, again);
}

#[test]
fn differences_name_changed_keys() {
    let a = Config::default();
    let mut b = a.clone();
    assert!(a.differences(&b).is_empty());
    b.netlink.rcvbuf_bytes = 1 << 20;
    b.log.level = LogLevel(Level::Debug);
    b.runtime.cpu = Some(0);
    assert_eq!(
        a.differences(&b),
        vec!["log.level", "netlink.rcvbuf_bytes", "runtime.cpu"]
    );
    assert_eq!(
        b.differences(&a),
        vec!["log.level", "netlink.rcvbuf_bytes", "runtime.cpu"]
    );
}

/// Issue 14 item 2: `[log] output` from the file, the environment or a
/// flag, like every other key; a wrong value names the choices.
#[test]
fn log_output_comes_from_file_environment_or_flag() {
    assert_eq!(Config::default().log.output, LogOutput::Auto);
    let c = Config::from_parts(None, "[log]\noutput = \"syslog\"\n", &[]).unwrap();
    assert_eq!(c.log.output, LogOutput::Syslog);
    let o = env(&[("PORTSYNCD_LOG_OUTPUT", "stderr")]);
    let c = Config::from_parts(None, "[log]\noutput = \"syslog\"\n", &o).unwrap();
    assert_eq!(c.log.output, LogOutput::Stderr);
    let mut o = o;
    o.push(Override::from_flag("log.output=auto").unwrap());
    let c = Config::from_parts(None, "", &o).unwrap();
    assert_eq!(c.log.output, LogOutput::Auto);
    let e = err("", &[Override::from_flag("log.output=file").unwrap()]);
    assert!(
        e.contains("--set log.output=file") && e.contains("auto") && e.contains("syslog"),
        "{e}"
    );
    assert_eq!(LogOutput::Syslog.resolve(), Output::Syslog);
    assert_eq!(LogOutput::Stderr.resolve(), Output::Stderr);
}

#[test]
fn a_namespace_comes_from_file_environment_or_flag() {
    let c = Config::from_parts(None, "", &[]).unwrap();
    assert_eq!(c.runtime.namespace, "");
    assert_eq!(
        c.redis.database_global_config,
        Path::new(DEFAULT_DATABASE_GLOBAL_CONFIG)
    );
    let c = Config::from_parts(None, "[runtime]\nnamespace = \"asic0\"\n", &[]).unwrap();
    assert_eq!(c.runtime.namespace, "asic0");
    let mut o = env(&[
        ("PORTSYNCD_RUNTIME_NAMESPACE", "asic1"),
        ("PORTSYNCD_REDIS_DATABASE_GLOBAL_CONFIG", "/g.json"),
    ]);
    let c = Config::from_parts(None, "", &o).unwrap();
    assert_eq!(c.runtime.namespace, "asic1");
    assert_eq!(c.redis.database_global_config, Path::new("/g.json"));
    o.push(Override::from_key_flag(
        "--namespace",
        "runtime",
        "namespace",
        "asic2",
    ));
    let c = Config::from_parts(None, "", &o).unwrap();
    assert_eq!(c.runtime.namespace, "asic2");
}

/// A value that reads as a number or a boolean is still text for a key
/// that takes text: a namespace may be named `0`.
#[test]
fn numbers_are_text_where_a_key_takes_text() {
    let o = vec![
        Override::from_key_flag("--namespace", "runtime", "namespace", "0"),
        Override::from_flag("redis.database_config=1").unwrap(),
    ];
    let c = Config::from_parts(None, "", &o).unwrap();
    assert_eq!(c.runtime.namespace, "0");
    assert_eq!(c.redis.database_config, Path::new("1"));
    // Where text is no better, the error is the first one's.
    let e = err("", &[Override::from_flag("runtime.mlock_all=1").unwrap()]);
    assert!(
        e.contains("--set runtime.mlock_all=1") && e.contains("expected a boolean"),
        "{e}"
    );
}

#[test]
fn a_namespace_is_one_file_name() {
    for (name, why) in [
        ("a/b", "no '/'"),
        ("..", "not a namespace name"),
        (".", "not a namespace name"),
    ] {
        let o = [Override::from_key_flag(
            "--namespace",
            "runtime",
            "namespace",
            name,
        )];
        let e = err("", &o);
        assert!(
            e.starts_with(&format!("runtime.namespace = {name:?}: ")) && e.contains(why),
            "{e}"
        );
    }
    let long = "a".repeat(256);
    let e = err(&format!("[runtime]\nnamespace = \"{long}\"\n"), &[]);
    assert!(e.contains("255 bytes"), "{e}");
    let e = err("[redis]\ndatabase_global_config = \"\"\n", &[]);
    assert!(e.starts_with("redis.database_global_config = \"\""), "{e}");
}
