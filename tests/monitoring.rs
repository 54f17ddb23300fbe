//! The monitoring assets in `contrib/` against the daemons they watch,
//! for every daemon we ship: its alerting rules pass `promtool check
//! rules` and their fixtures, its dashboard's expressions parse, and every
//! metric and label that its rules and its dashboard name is one the live
//! daemon exports — so a renamed metric breaks this test, not an
//! operator's alert at 3 a.m.

mod util;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::metrics::{promtool, scrape, Scrape};
use util::{Daemon, DaemonOptions, Netns, RedisServer, Syncd, TempDir, WAIT};

/// The series Prometheus records itself for every target it scrapes.
const PROMETHEUS_SERIES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The labels Prometheus attaches to every series of a target.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// The daemons `contrib/` has rules, fixtures and a dashboard for.
const DAEMONS: &[&str] = &["portsyncd", "neighsyncd"];

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

/// A daemon's alerting rules.
fn rules_file(daemon: &str) -> PathBuf {
    contrib(&format!("prometheus/{daemon}.rules.yml"))
}

/// Every `promtool test rules` fixture, each with the rules files it
/// loads (its `rule_files:` list, as written).
fn all_fixtures() -> Vec<(PathBuf, Vec<String>)> {
    let dir = contrib("prometheus/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let rules = text
                .lines()
                .skip_while(|l| *l != "rule_files:")
                .skip(1)
                .map_while(|l| l.strip_prefix("  - "))
                .map(|r| r.trim().to_string())
                .collect();
            (f, rules)
        })
        .collect()
}

/// A daemon's fixtures: those that load its rules.
fn rule_fixtures(daemon: &str) -> Vec<PathBuf> {
    let mine = format!("../{daemon}.rules.yml");
    let files: Vec<PathBuf> = all_fixtures()
        .into_iter()
        .filter(|(_, rules)| rules.contains(&mine))
        .map(|(f, _)| f)
        .collect();
    assert!(!files.is_empty(), "no fixture loads {mine}");
    files
}

/// A daemon's Grafana dashboard, parsed.
fn dashboard(daemon: &str) -> Value {
    let path = contrib(&format!("grafana/{daemon}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run promtool; its output when it fails.
fn run_promtool(promtool: &Path, args: &[&str]) -> Result<String, String> {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(promtool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    if status.success() {
        Ok(text)
    } else {
        Err(format!("promtool {} ({status}):\n{text}", args.join(" ")))
    }
}

/// A PromQL expression and where it came from, for messages.
#[derive(Debug)]
struct Query {
    at: String,
    expr: String,
}

/// Every `expr:` of the rules file. A line reader for the two shapes the
/// file uses (`expr: one line` and `expr: |` with a more indented block),
/// not a YAML parser: the caller checks it found as many as promtool does.
fn rule_queries(yaml: &str) -> Vec<Query> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut alert = String::from("?");
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let key = line.trim_start().trim_start_matches("- ");
        if let Some(name) = key.strip_prefix("alert:") {
            alert = name.trim().to_string();
        }
        let Some(value) = key.strip_prefix("expr:") else {
            i += 1;
            continue;
        };
        let at = format!("rule {alert} (line {})", i + 1);
        let value = value.trim();
        i += 1;
        let expr = if matches!(value, "|" | "|-" | ">" | ">-") {
            let mut block = String::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line))
            {
                block.push_str(lines[i].trim());
                block.push('\n');
                i += 1;
            }
            block
        } else if let Some(q) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            q.replace("''", "'")
        } else {
            assert!(!value.starts_with('"'), "{at}: quote it with '' or use |");
            value.to_string()
        };
        out.push(Query { at, expr });
    }
    out
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// Every PromQL expression of the dashboard: each target's `expr`, and
/// each query variable's selector (`label_values(selector, label)`).
fn dashboard_queries(d: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let at = format!(
                "panel {} {:?} target {}",
                p["id"],
                p["title"].as_str().unwrap_or_default(),
                t["refId"].as_str().unwrap_or_default()
            );
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no expr in {t}"));
            out.push(Query {
                at,
                expr: expr.to_string(),
            });
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let at = format!("variable {}", v["name"]);
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_else(|| panic!("{at}: no query in {v}"));
        let (selector, label) = label_values(q).unwrap_or_else(|e| panic!("{at}: {e}"));
        // The label must be one of the selector's: check it as a matcher.
        let expr = match selector.strip_suffix('}') {
            Some(open) => format!("{open}, {label}!=\"\"}}"),
            None => format!("{selector}{{{label}!=\"\"}}"),
        };
        out.push(Query { at, expr });
    }
    out
}

/// `label_values(selector, label)` of a Grafana query variable: the
/// selector and the label.
fn label_values(q: &str) -> Result<(&str, &str), String> {
    let args = q
        .trim()
        .strip_prefix("label_values(")
        .and_then(|a| a.strip_suffix(')'))
        .ok_or_else(|| format!("{q:?}: only label_values(selector, label) is checked"))?;
    let (selector, label) = args
        .rsplit_once(',')
        .ok_or_else(|| format!("{q:?}: label_values without a selector matches any series"))?;
    let label = label.trim();
    if label.is_empty()
        || !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!("{q:?}: {label:?} is not a label name"));
    }
    Ok((selector.trim(), label))
}

/// Grafana's variables replaced by values PromQL accepts, for promtool.
fn grafana_to_promql(expr: &str) -> String {
    let mut e = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    for v in ["${instance}", "$instance"] {
        e = e.replace(v, ".*");
    }
    assert!(!e.contains('$'), "a Grafana variable left in {e:?}");
    e
}

/// What `contrib/` holds is what [`DAEMONS`] lists, nothing less and
/// nothing more: a daemon added without its rules or dashboard, or a file
/// no test checks, fails here. Each fixture loads one daemon's rules and
/// is named after it.
#[test]
fn every_daemon_has_rules_fixtures_and_a_dashboard() {
    let listed = |dir: &str, suffix: &str| -> BTreeSet<String> {
        std::fs::read_dir(contrib(dir))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(suffix).map(str::to_string)
            })
            .collect()
    };
    let daemons: BTreeSet<String> = DAEMONS.iter().map(|d| d.to_string()).collect();
    assert_eq!(listed("prometheus", ".rules.yml"), daemons);
    assert_eq!(listed("grafana", ".json"), daemons);
    for (f, rules) in all_fixtures() {
        let name = f.file_name().unwrap().to_str().unwrap();
        let [rules] = &rules[..] else {
            panic!("{name} loads {rules:?}: one daemon's rules, please");
        };
        let daemon = DAEMONS
            .iter()
            .find(|d| *rules == format!("../{d}.rules.yml"))
            .unwrap_or_else(|| panic!("{name} loads {rules}, no daemon's rules"));
        assert!(
            name.starts_with(&format!("{daemon}-")),
            "{name} tests {daemon}'s rules: call it {daemon}-…"
        );
    }
    let uids: BTreeSet<String> = DAEMONS
        .iter()
        .map(|d| dashboard(d)["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        uids.len(),
        DAEMONS.len(),
        "dashboards share a uid: {uids:?}"
    );
}

#[test]
fn promtool_checks_the_rules_and_runs_their_fixtures() {
    let Some(promtool) = promtool() else {
        eprintln!("SKIPPED: promtool is absent and could not be installed (tools/install-deps needs root and apt)");
        return;
    };
    for daemon in DAEMONS {
        let rules = rules_file(daemon);
        let checked = run_promtool(&promtool, &["check", "rules", rules.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{e}"));
        // promtool counts the rules it parsed: our line reader must find as
        // many expressions, or the metric-name check would miss some.
        let text = std::fs::read_to_string(&rules).unwrap();
        let found = rule_queries(&text).len();
        assert!(
            checked.contains(&format!("SUCCESS: {found} rules found")),
            "{daemon}: the test read {found} expressions; promtool:\n{checked}"
        );
        assert!(found >= 10, "{daemon}: {found} rules");
    }

    let fixtures: Vec<PathBuf> = all_fixtures().into_iter().map(|(f, _)| f).collect();
    let mut args = vec!["test", "rules"];
    args.extend(fixtures.iter().map(|p| p.to_str().unwrap()));
    run_promtool(&promtool, &args).unwrap_or_else(|e| panic!("{e}"));
}

/// Each fixture tests at least one alert, and each alert is tested:
/// firing somewhere and quiet somewhere, in its daemon's fixtures.
#[test]
fn every_alert_has_a_firing_and_a_quiet_fixture() {
    for daemon in DAEMONS {
        let rules = std::fs::read_to_string(rules_file(daemon)).unwrap();
        let alerts: BTreeSet<&str> = rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- alert:"))
            .map(str::trim)
            .collect();
        let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
        for f in rule_fixtures(daemon) {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut alert = String::new();
            for line in text.lines().map(str::trim) {
                if let Some(a) = line.strip_prefix("alertname:") {
                    alert = a.trim().to_string();
                } else if line == "exp_alerts: []" {
                    quiet.insert(alert.clone());
                } else if line == "exp_alerts:" {
                    firing.insert(alert.clone());
                }
            }
        }
        for a in &alerts {
            assert!(firing.contains(*a), "no fixture fires {a}");
            assert!(quiet.contains(*a), "no fixture keeps {a} quiet");
        }
        let unknown: Vec<_> = firing
            .union(&quiet)
            .filter(|a| !alerts.contains(a.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{daemon}'s fixtures test alerts it has no rule for: {unknown:?}"
        );
    }
}

/// Grafana keeps a dashboard it cannot parse a query of, and shows an
/// error in the panel; promtool tells us first.
#[test]
fn every_dashboard_expression_parses() {
    let Some(promtool) = promtool() else {
        eprintln!("SKIPPED: promtool is absent and could not be installed (tools/install-deps needs root and apt)");
        return;
    };
    for daemon in DAEMONS {
        let queries = dashboard_queries(&dashboard(daemon));
        let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
        for (i, q) in queries.iter().enumerate() {
            // JSON strings are YAML double-quoted scalars.
            let expr = serde_json::to_string(&grafana_to_promql(&q.expr)).unwrap();
            yaml.push_str(&format!(
                "      # {}\n      - record: dashboard_query_{i}\n        expr: {expr}\n",
                q.at.replace('\n', " ")
            ));
        }
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(format!("{daemon}-dashboard.rules.yml"));
        std::fs::write(&path, &yaml).unwrap();
        let out = run_promtool(&promtool, &["check", "rules", path.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{daemon}'s dashboard: {e}\n{yaml}"));
        assert!(
            out.contains(&format!("SUCCESS: {} rules found", queries.len())),
            "{daemon}'s dashboard: {out}"
        );
    }
}

/// What an import needs: the datasource input every query uses, the
/// `instance` variable every query filters on, a grid without overlaps.
#[test]
fn the_dashboards_import_with_one_datasource_and_an_instance_variable() {
    for daemon in DAEMONS {
        check_dashboard_imports(daemon, &dashboard(daemon));
    }
}

fn check_dashboard_imports(daemon: &str, d: &Value) {
    let schema = d["schemaVersion"].as_u64().unwrap();
    assert!(
        (36..=41).contains(&schema),
        "{daemon}: schemaVersion {schema}"
    );
    let inputs = d["__inputs"].as_array().unwrap();
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "{daemon}: {inputs:?}"
    );
    let ds = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let vars = d["templating"]["list"].as_array().unwrap();
    let instance = vars
        .iter()
        .find(|v| v["name"] == "instance")
        .unwrap_or_else(|| panic!("{daemon}: no instance variable"));
    assert_eq!(instance["datasource"], ds, "{daemon}");

    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "{daemon}: a panel without a title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{daemon}: id {} twice",
            p["id"]
        );
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap());
        assert!(
            x + w <= 24,
            "{daemon}: {title:?} is wider than the grid: {g}"
        );
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "{daemon}: {title:?} overlaps {other:?}");
        }
        boxes.push((title.to_string(), [x, y, w, h]));
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"], ds, "{daemon}: {title:?}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{daemon}: {title:?} has no query");
        for t in targets {
            assert_eq!(t["datasource"], ds, "{daemon}: {title:?}");
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{daemon}: {title:?}: {expr} ignores the instance variable"
            );
        }
    }
}

/// Start `daemon` (`binary`) in `ns` with its metrics endpoint on `addr`,
/// the suite's other options kept (the reactor under test).
fn start_with_metrics(ns: &Netns, redis: &RedisServer, binary: String, addr: SocketAddr) -> Daemon {
    let mut opts = DaemonOptions {
        binary: Some(binary),
        ..Default::default()
    };
    opts.sets.push(format!("metrics.listen={addr}"));
    let daemon = Daemon::start_with(ns, redis, opts);
    daemon.wait_ready();
    daemon
}

/// Scrape until every series of `want` is at least 1: the metrics
/// thread takes the loop's latency samples asynchronously, and the loop
/// sets its gauges once a second.
fn scrape_until(ns: &Netns, addr: SocketAddr, want: &[&str]) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(ns, addr);
        if want.iter().all(|s| m.0.get(*s).is_some_and(|v| *v >= 1.0)) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{want:?} never all counted; scrape: {:?}",
            m.0
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every metric and label that `daemon`'s rules and dashboard name is in
/// the scrape `m` of the live daemon.
fn check_names_exported(daemon: &str, m: &Scrape) {
    let exported = m.names();
    let labels = m.label_names();
    let rules = std::fs::read_to_string(rules_file(daemon)).unwrap();
    let mut queries = rule_queries(&rules);
    queries.extend(dashboard_queries(&dashboard(daemon)));
    let mut wrong = Vec::new();
    let mut checked = BTreeSet::new();
    for q in &queries {
        let names = promql::names(&q.expr).unwrap_or_else(|e| panic!("{daemon} {}: {e}", q.at));
        assert!(
            !names.metrics.is_empty(),
            "{daemon} {}: no metric in {}",
            q.at,
            q.expr
        );
        for n in &names.metrics {
            checked.insert(n.clone());
            if !exported.contains(n) && !PROMETHEUS_SERIES.contains(&n.as_str()) {
                wrong.push(format!("{daemon} {}: metric {n} is not exported", q.at));
            }
        }
        for l in &names.labels {
            if !labels.contains(l) && !TARGET_LABELS.contains(&l.as_str()) {
                wrong.push(format!(
                    "{daemon} {}: label {l} is on no exported series",
                    q.at
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nexported: {exported:?}\nlabels: {labels:?}",
        wrong.join("\n")
    );
    assert!(checked.len() >= 30, "{daemon}: only {checked:?} checked");
}

/// Issue 14 item 5: every metric and label portsyncd's rules and
/// dashboard name is exported by the real daemon — its `/metrics`,
/// scraped after a port was written and flapped so that every family has
/// a series.
#[test]
fn every_name_in_portsyncds_rules_and_dashboard_is_exported() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&["Ethernet0"]).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], 29101));
    let _daemon = start_with_metrics(&ns, &redis, Daemon::binary(), addr);
    redis.orchagent_pop().unwrap();
    ns.add_port("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "down", "down", 1500).unwrap();
    ns.set_up("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    let m = scrape_until(&ns, addr, &["portsyncd_recv_to_reply_seconds_count"]);
    // The scrape has what the check relies on.
    let exported = m.names();
    for name in [
        "portsyncd_recv_to_reply_seconds_bucket",
        "portsyncd_port_flaps_total",
        "process_open_fds",
    ] {
        assert!(exported.contains(name), "{name} not in {exported:?}");
    }
    check_names_exported("portsyncd", &m);
}

/// The same for neighsyncd, scraped after a neighbor was written to
/// APPL_DB so that its histograms have samples.
#[test]
fn every_name_in_neighsyncds_rules_and_dashboard_is_exported() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    Syncd::Neighsyncd.prepare(&ns, &redis);
    let addr = SocketAddr::from(([127, 0, 0, 1], 29102));
    let _daemon = start_with_metrics(&ns, &redis, Daemon::neighsyncd_binary(), addr);
    Syncd::Neighsyncd.exercise(&ns, &redis);
    let m = scrape_until(
        &ns,
        addr,
        &[
            "neighsyncd_recv_to_reply_seconds_count",
            "neighsyncd_recv_to_write_seconds_count",
            "neighsyncd_batch_commands_count",
            "neighsyncd_neighbors_written_total",
            "neighsyncd_known_neighbors",
        ],
    );
    let exported = m.names();
    for name in [
        "neighsyncd_recv_to_reply_seconds_bucket",
        "neighsyncd_neighbors_written_total",
        "neighsyncd_warm_reconciled_total",
        "process_open_fds",
    ] {
        assert!(exported.contains(name), "{name} not in {exported:?}");
    }
    check_names_exported("neighsyncd", &m);
}

/// A small PromQL reader: the metric and label names an expression uses.
/// Not a parser (promtool checks syntax): it tells identifiers apart —
/// a function is followed by `(`, aggregations and keywords are known,
/// `by`/`on`/… are followed by a label list, `{…}` holds label matchers —
/// and skips strings, numbers, durations, ranges, comments and Grafana's
/// `$variables`.
mod promql {
    use std::collections::BTreeSet;

    /// What an expression names.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Names {
        pub metrics: BTreeSet<String>,
        pub labels: BTreeSet<String>,
    }

    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    /// Keywords followed by a parenthesised list of label names.
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
    ];

    fn ident_start(b: u8) -> bool {
        b.is_ascii_alphabetic() || b == b'_' || b == b':'
    }

    fn ident_byte(b: u8) -> bool {
        ident_start(b) || b.is_ascii_digit()
    }

    struct Reader<'a> {
        text: &'a str,
        at: usize,
    }

    impl<'a> Reader<'a> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.at).copied()
        }

        fn skip_space(&mut self) {
            while let Some(b) = self.peek() {
                if b.is_ascii_whitespace() {
                    self.at += 1;
                } else if b == b'#' {
                    // A comment, to the end of the line.
                    self.at = self.text[self.at..]
                        .find('\n')
                        .map_or(self.text.len(), |n| self.at + n);
                } else {
                    return;
                }
            }
        }

        fn while_bytes(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
            let start = self.at;
            while self.peek().is_some_and(&keep) {
                self.at += 1;
            }
            &self.text[start..self.at]
        }

        /// A quoted string at the cursor, unescaped (`\x` → `x`; raw in
        /// backquotes).
        fn string(&mut self) -> Result<String, String> {
            let start = self.at;
            let quote = self.text.as_bytes()[start];
            let mut out = String::new();
            let mut chars = self.text[start + 1..].char_indices();
            while let Some((i, c)) = chars.next() {
                if c as u32 == u32::from(quote) {
                    self.at = start + 1 + i + 1;
                    return Ok(out);
                }
                if c == '\\' && quote != b'`' {
                    match chars.next() {
                        Some((_, e)) => out.push(e),
                        None => break,
                    }
                } else {
                    out.push(c);
                }
            }
            Err(format!("unterminated string at byte {start}"))
        }

        /// Past the next `close`.
        fn skip_past(&mut self, close: char) -> Result<(), String> {
            let start = self.at;
            match self.text[start..].find(close) {
                Some(n) => {
                    self.at = start + n + 1;
                    Ok(())
                }
                None => Err(format!("no {close:?} after byte {start}")),
            }
        }

        /// `name` or `"name"` (quoted names are Prometheus 3's), and
        /// whether it was quoted.
        fn name(&mut self) -> Result<Option<(String, bool)>, String> {
            match self.peek() {
                Some(b'"' | b'\'' | b'`') => Ok(Some((self.string()?, true))),
                Some(b) if ident_start(b) => {
                    Ok(Some((self.while_bytes(ident_byte).to_string(), false)))
                }
                _ => Ok(None),
            }
        }

        /// Label matchers, after the `{`, up to and past the `}`.
        fn matchers(&mut self, out: &mut Names) -> Result<(), String> {
            loop {
                self.skip_space();
                match self.peek() {
                    Some(b'}') => {
                        self.at += 1;
                        return Ok(());
                    }
                    Some(b',') => self.at += 1,
                    None => return Err("no '}' closing the label matchers".into()),
                    Some(_) => {
                        let at = self.at;
                        let (name, quoted) = self
                            .name()?
                            .ok_or_else(|| format!("a label name expected at byte {at}"))?;
                        self.skip_space();
                        let op = self.while_bytes(|b| matches!(b, b'=' | b'!' | b'~'));
                        if op.is_empty() {
                            if !quoted {
                                return Err(format!("no operator after label {name}"));
                            }
                            // `{"metric.name"}`: a quoted name alone is the metric.
                            out.metrics.insert(name);
                            continue;
                        }
                        self.skip_space();
                        let value = match self.peek() {
                            Some(b'"' | b'\'' | b'`') => self.string()?,
                            _ => return Err(format!("a quoted value expected after {name}{op}")),
                        };
                        if name == "__name__" && op == "=" {
                            out.metrics.insert(value);
                        } else {
                            out.labels.insert(name);
                        }
                    }
                }
            }
        }

        /// A label list, after the `(`, up to and past the `)`.
        fn label_list(&mut self, out: &mut Names) -> Result<(), String> {
            loop {
                self.skip_space();
                match self.peek() {
                    Some(b')') => {
                        self.at += 1;
                        return Ok(());
                    }
                    Some(b',') => self.at += 1,
                    None => return Err("no ')' closing a label list".into()),
                    Some(_) => {
                        let at = self.at;
                        let (name, _) = self
                            .name()?
                            .ok_or_else(|| format!("a label name expected at byte {at}"))?;
                        out.labels.insert(name);
                    }
                }
            }
        }
    }

    /// The metric and label names `expr` uses.
    pub fn names(expr: &str) -> Result<Names, String> {
        let mut r = Reader { text: expr, at: 0 };
        let mut out = Names::default();
        loop {
            r.skip_space();
            let Some(b) = r.peek() else {
                return Ok(out);
            };
            match b {
                b'"' | b'\'' | b'`' => {
                    r.string()?;
                }
                b'{' => {
                    r.at += 1;
                    r.matchers(&mut out)?;
                }
                // A range or subquery: durations and Grafana intervals.
                b'[' => r.skip_past(']')?,
                // Grafana: `${name}`, `${name:format}` or `$name`.
                b'$' => {
                    r.at += 1;
                    if r.peek() == Some(b'{') {
                        r.skip_past('}')?;
                    } else {
                        r.while_bytes(|b| b.is_ascii_alphanumeric() || b == b'_');
                    }
                }
                // Numbers and durations: `0.99`, `1e-3`, `0x1f`, `5m`.
                b'0'..=b'9' | b'.' => {
                    r.while_bytes(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
                }
                b if ident_start(b) => {
                    let word = r.while_bytes(ident_byte);
                    let lower = word.to_ascii_lowercase();
                    r.skip_space();
                    if LABEL_LISTS.contains(&lower.as_str()) {
                        if r.peek() == Some(b'(') {
                            r.at += 1;
                            r.label_list(&mut out)?;
                        }
                    } else if !(AGGREGATIONS.contains(&lower.as_str())
                        || KEYWORDS.contains(&lower.as_str())
                        || r.peek() == Some(b'('))
                    {
                        out.metrics.insert(word.to_string());
                    }
                }
                // Operators, parentheses, commas, `@`.
                _ => r.at += 1,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn set(names: &[&str]) -> BTreeSet<String> {
            names.iter().map(|s| s.to_string()).collect()
        }

        fn check(expr: &str, metrics: &[&str], labels: &[&str]) {
            let got = names(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(got.metrics, set(metrics), "metrics of {expr}");
            assert_eq!(got.labels, set(labels), "labels of {expr}");
        }

        #[test]
        fn functions_aggregations_and_label_lists_are_not_metrics() {
            check(
                r#"histogram_quantile(0.99, sum by (instance, le) (rate(portsyncd_recv_to_reply_seconds_bucket{instance=~"$instance"}[$__rate_interval])))"#,
                &["portsyncd_recv_to_reply_seconds_bucket"],
                &["instance", "le"],
            );
            check(
                "sum(rate(a_bucket[5m])) without (port) / ignoring (le) count(b)",
                &["a_bucket", "b"],
                &["port", "le"],
            );
            check(
                "topk(20, round(SUM BY (port) (increase(f_total[$__range]))) > 0)",
                &["f_total"],
                &["port"],
            );
        }

        #[test]
        fn binary_operators_and_vector_matching() {
            check(
                "increase(portsyncd_loop_turns_total[2m]) == 0\nand on (job, instance) up == 1",
                &["portsyncd_loop_turns_total", "up"],
                &["job", "instance"],
            );
            check(
                "a * on (instance) group_left (version) b unless c or d > bool 1",
                &["a", "b", "c", "d"],
                &["instance", "version"],
            );
        }

        #[test]
        fn numbers_durations_strings_and_comments_are_skipped() {
            check(
                "rate(x[1h30m] offset 5m) > 1e-3 + 0x1f + .5 + Inf # y_total is a comment",
                &["x"],
                &[],
            );
            check(
                r#"label_replace(m, "dst", "$1", "src", "(.*)") + rate(n[5m:30s])"#,
                &["m", "n"],
                &[],
            );
        }

        #[test]
        fn matchers_name_labels_and_the_name_matcher_names_a_metric() {
            check(
                r#"{__name__="portsyncd_redis_up", reason!~"a\"}b", source='x'} + {"quoted.metric"}"#,
                &["portsyncd_redis_up", "quoted.metric"],
                &["reason", "source"],
            );
            check(
                r#"m{instance=~"${instance:regex}", job=`raw\`} + $var"#,
                &["m"],
                &["instance", "job"],
            );
        }

        #[test]
        fn what_is_not_closed_is_an_error() {
            for bad in [
                r#"m{a="x""#,
                r#"m{a="x}"#,
                "rate(m[5m)",
                "sum by (a, b m",
                "m{a}",
                "m{=\"x\"}",
                "${instance",
            ] {
                assert!(names(bad).is_err(), "{bad} was read without an error");
            }
        }
    }
}

#[test]
fn rule_expressions_are_read_inline_and_as_blocks() {
    let yaml = "groups:
  - name: g
    rules:
      - alert: A
        expr: up{job=\"x\"} == 0
        for: 1m
      - alert: B
        expr: |
          increase(a_total[2m]) == 0
          and on (instance) up == 1
        for: 1m
      - alert: C
        expr: 'b > 0'
";
    let q = rule_queries(yaml);
    let got: Vec<(&str, &str)> = q.iter().map(|q| (q.at.as_str(), q.expr.as_str())).collect();
    assert_eq!(
        got,
        [
            ("rule A (line 5)", "up{job=\"x\"} == 0"),
            (
                "rule B (line 8)",
                "increase(a_total[2m]) == 0\nand on (instance) up == 1\n"
            ),
            ("rule C (line 13)", "b > 0"),
        ]
    );
}

#[test]
fn label_values_gives_the_selector_and_the_label() {
    assert_eq!(
        label_values("label_values(portsyncd_build_info, instance)"),
        Ok(("portsyncd_build_info", "instance"))
    );
    assert_eq!(
        label_values(r#"label_values(m{a="1,2"}, port)"#),
        Ok((r#"m{a="1,2"}"#, "port"))
    );
    assert!(label_values("label_values(instance)").is_err());
    assert!(label_values("metrics(portsyncd_.*)").is_err());
}
