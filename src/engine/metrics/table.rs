//! One table of counters for the daemons: each entry says once what a
//! field is, how it is exported, by which daemons, and whether the
//! `totals:` log line shows it.
//!
//! `counters_table!` turns the table into three things: the struct of
//! [`Counter`](super::Counter) and [`Gauge`](super::Gauge) fields the loop
//! writes (plain fields, so `counters.enobufs.inc()` is the same relaxed
//! load and store as a hand-written struct), a static [`Entry`] list the
//! metrics thread walks for the Prometheus text
//! ([`render::table`](super::render::table)) and `docs/metrics.md`
//! ([`docs`](super::docs)), and a `totals(daemon)` method for the one-line
//! log summary. A new counter is one new line in the table.
//!
//! ```text
//! counters_table! {
//!     /// Doc of the struct.
//!     pub struct Counters {
//!         // One family: name (the metrics thread adds `<daemon>_`), TYPE,
//!         // HELP, then its fields. Exported by every daemon.
//!         "netlink_datagrams_total" counter "Netlink datagrams received." {
//!             datagrams: Counter totals "datagrams",
//!         }
//!         // A family split by a label: one field per label value. A field
//!         // can be one daemon's only (`only port`, `only neigh`), and so
//!         // can its word in the `totals:` line (`totals "w" only port`).
//!         "netlink_messages_total" counter "Netlink messages received, by type." {
//!             msgs_newlink: Counter ("type" = "newlink") totals "newlink" only port,
//!             msgs_newneigh: Counter ("type" = "newneigh") only neigh totals "newneigh",
//!             msgs_done: Counter ("type" = "done"),
//!         }
//!         // A family one daemon exports: `only` between TYPE and HELP.
//!         "ports_written_total" counter only port "STATE_DB PORT_TABLE HSETs sent." {
//!             ports_written: Counter totals "written",
//!         }
//!         "loop_cpu_seconds_total" counter "CPU time used by the loop thread." {
//!             /// Extra doc for the field (after the HELP text).
//!             loop_cpu_ns: Gauge (seconds),
//!         }
//!         "reactor" gauge "The reactor in use (1 for the one in use)." {
//!             reactor: Gauge (one_hot "reactor" ["epoll", "io_uring"]),
//!         }
//!     }
//! }
//! ```
//!
//! Families are written in export order, and the `totals:` line follows
//! the same order. A `totals` word is unique among the entries one daemon
//! exports: `written` can be portsyncd's ports and neighsyncd's neighbors.

use std::fmt;

use super::daemon::{Daemon, Scope};

/// The Prometheus `TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    /// The word in `# TYPE name <word>`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// How a field's value becomes samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `name value`.
    Plain,
    /// `name{key="value"} value`: one member of a family split by a label.
    Label(&'static str, &'static str),
    /// The field holds nanoseconds; the sample is exact decimal seconds.
    Seconds,
    /// The field holds an index into the names: one sample per name,
    /// `name{key="n"} 1` for the one it selects and 0 for the others.
    OneHot(&'static str, &'static [&'static str]),
}

/// One field of a counters table and how it is exported.
pub struct Entry<C> {
    /// The struct field.
    pub field: &'static str,
    /// The family name without the daemon's prefix; a family's entries
    /// are adjacent.
    pub name: &'static str,
    pub kind: MetricType,
    /// The `HELP` text of the family.
    pub help: &'static str,
    pub shape: Shape,
    /// The daemons that export it.
    pub scope: Scope,
    /// The word before the value in the `totals:` line, if it is shown.
    pub totals: Option<&'static str>,
    /// The daemons whose `totals:` line shows it (among those that export
    /// it).
    pub totals_scope: Scope,
    /// The field's current value (a relaxed load).
    pub read: fn(&C) -> u64,
}

impl<C> Entry<C> {
    /// Its word in `daemon`'s `totals:` line, if that line shows it.
    pub fn totals_word(&self, daemon: Daemon) -> Option<&'static str> {
        self.totals
            .filter(|_| daemon.exports(self.scope) && daemon.exports(self.totals_scope))
    }
}

/// A struct declared by `counters_table!`, with its table in field order.
pub trait CountersTable: Sized + 'static {
    const ENTRIES: &'static [Entry<Self>];
}

/// One daemon's one-line summary of a counters table: `totals:` then
/// `word value` for each entry its line shows, in table order.
pub struct Totals<'a, C> {
    pub counters: &'a C,
    pub daemon: Daemon,
}

impl<C: CountersTable> fmt::Display for Totals<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("totals:")?;
        for e in C::ENTRIES {
            if let Some(word) = e.totals_word(self.daemon) {
                write!(f, " {word} {}", (e.read)(self.counters))?;
            }
        }
        Ok(())
    }
}

/// What makes a table unexportable, or `Ok`: a family split in two, its
/// entries disagreeing on TYPE or HELP, a counter not ending `_total`, a
/// name already carrying a prefix the metrics thread adds, a label value
/// used twice, a `totals` word used twice in one daemon's line, an empty
/// HELP. The tests of each table call it.
pub fn check<C: CountersTable>() -> Result<(), String> {
    let entries = C::ENTRIES;
    for (i, e) in entries.iter().enumerate() {
        let f = e.field;
        if e.help.is_empty() {
            return Err(format!("{f}: empty HELP"));
        }
        if !e
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("{f}: bad name {:?}", e.name));
        }
        if let Some(d) = Daemon::ALL.iter().find(|d| e.name.starts_with(d.prefix())) {
            return Err(format!(
                "{f}: {} starts {} (the metrics thread adds it)",
                e.name,
                d.prefix()
            ));
        }
        match e.kind {
            MetricType::Counter if !e.name.ends_with("_total") => {
                return Err(format!("{f}: counter {} does not end _total", e.name))
            }
            MetricType::Gauge if e.name.ends_with("_total") => {
                return Err(format!("{f}: gauge {} ends _total", e.name))
            }
            MetricType::Histogram => return Err(format!("{f}: a table holds no histogram")),
            _ => {}
        }
        let earlier = &entries[..i];
        if let Some(prev) = earlier.last().filter(|p| p.name == e.name) {
            if prev.kind != e.kind || prev.help != e.help {
                return Err(format!("{f}: TYPE or HELP differs from {}", prev.field));
            }
            let (Shape::Label(k, v), Shape::Label(pk, _)) = (e.shape, prev.shape) else {
                return Err(format!("{f}: {} has several fields but no label", e.name));
            };
            if k != pk || earlier.iter().any(|p| p.shape == e.shape) {
                return Err(format!("{f}: label {k}={v} repeated or mismatched"));
            }
        } else if earlier.iter().any(|p| p.name == e.name) {
            return Err(format!("{f}: family {} is split by other entries", e.name));
        }
        if let Some(w) = e.totals {
            if w.is_empty() || w.contains(char::is_whitespace) {
                return Err(format!("{f}: totals word {w:?} is not one word"));
            }
            if !Daemon::ALL.iter().any(|&d| e.totals_word(d).is_some()) {
                return Err(format!("{f}: totals word {w} is in no daemon's line"));
            }
        }
        for d in Daemon::ALL {
            let Some(w) = e.totals_word(d) else { continue };
            if earlier.iter().any(|p| p.totals_word(d) == Some(w)) {
                return Err(format!(
                    "{f}: totals word {w} used twice in {}'s line",
                    d.name()
                ));
            }
        }
    }
    Ok(())
}

/// Declare the daemons' counters table: the struct, its [`CountersTable`]
/// entries and `totals(daemon)`. See the [module](self) for the syntax.
macro_rules! counters_table {
    (@type counter) => { $crate::engine::metrics::table::MetricType::Counter };
    (@type gauge) => { $crate::engine::metrics::table::MetricType::Gauge };
    (@shape) => { $crate::engine::metrics::table::Shape::Plain };
    (@shape $key:literal = $value:literal) => {
        $crate::engine::metrics::table::Shape::Label($key, $value)
    };
    (@shape seconds) => { $crate::engine::metrics::table::Shape::Seconds };
    (@shape one_hot $key:literal [$($name:literal),+ $(,)?]) => {
        $crate::engine::metrics::table::Shape::OneHot($key, &[$($name),+])
    };
    (@only) => { $crate::engine::metrics::daemon::Scope::Every };
    (@only port) => { $crate::engine::metrics::daemon::Scope::Port };
    (@only neigh) => { $crate::engine::metrics::daemon::Scope::Neigh };
    // A field's scope: the family's (a bracketed `only` word, or none),
    // narrowed by the field's own.
    (@scope [$($family:ident)?]) => { $crate::engine::metrics::counters_table!(@only $($family)?) };
    (@scope [$($family:ident)?] $field:ident) => {
        $crate::engine::metrics::daemon::Scope::narrow(
            $crate::engine::metrics::counters_table!(@only $($family)?),
            Some($crate::engine::metrics::counters_table!(@only $field)),
        )
    };
    (@totals) => { None };
    (@totals $word:literal $($only:ident)?) => { Some($word) };
    (@totals_scope) => { $crate::engine::metrics::daemon::Scope::Every };
    (@totals_scope $word:literal $($only:ident)?) => {
        $crate::engine::metrics::counters_table!(@only $($only)?)
    };
    (
        @table
        $(#[$struct_attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $family:literal $kind:ident $scope:tt $help:literal {
                    $(
                        $(#[$field_attr:meta])*
                        $field:ident : $store:ident
                            $( ( $($shape:tt)* ) )?
                            $( only $field_scope:ident )?
                            $( totals $word:literal $( only $totals_scope:ident )? )?
                    ),+ $(,)?
                }
            )+
        }
    ) => {
        $(#[$struct_attr])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $($(
                #[doc = $help]
                $(#[$field_attr])*
                pub $field: $crate::engine::metrics::$store,
            )+)+
        }

        impl $crate::engine::metrics::table::CountersTable for $name {
            const ENTRIES: &'static [$crate::engine::metrics::table::Entry<Self>] = &[
                $($(
                    $crate::engine::metrics::table::Entry {
                        field: stringify!($field),
                        name: $family,
                        kind: $crate::engine::metrics::counters_table!(@type $kind),
                        help: $help,
                        shape: $crate::engine::metrics::counters_table!(@shape $($($shape)*)?),
                        scope: $crate::engine::metrics::counters_table!(
                            @scope $scope $($field_scope)?
                        ),
                        totals: $crate::engine::metrics::counters_table!(
                            @totals $($word $($totals_scope)?)?
                        ),
                        totals_scope: $crate::engine::metrics::counters_table!(
                            @totals_scope $($word $($totals_scope)?)?
                        ),
                        read: |c: &$name| c.$field.get(),
                    },
                )+)+
            ];
        }

        impl $name {
            /// `daemon`'s one-line summary for the log: `totals:` then
            /// `word value` for each entry its line shows, in table order.
            pub fn totals(
                &self,
                daemon: $crate::engine::metrics::daemon::Daemon,
            ) -> $crate::engine::metrics::table::Totals<'_, $name> {
                $crate::engine::metrics::table::Totals { counters: self, daemon }
            }
        }
    };
    // The syntax written: each family's `only` word becomes one bracketed
    // token, so its fields (one repetition deeper) can use it.
    (
        $(#[$struct_attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $family:literal $kind:ident $(only $scope:ident)? $help:literal {
                    $($fields:tt)*
                }
            )+
        }
    ) => {
        $crate::engine::metrics::counters_table! {
            @table
            $(#[$struct_attr])*
            $vis struct $name {
                $( $family $kind [$($scope)?] $help { $($fields)* } )+
            }
        }
    };
}
pub(crate) use counters_table;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::metrics::{Counter, Gauge};

    counters_table! {
        /// A table as the daemons would declare it.
        struct Sample {
            "x_events_total" counter "Events, by kind." {
                /// More about this one.
                new_events: Counter ("kind" = "new") totals "new",
                del_events: Counter ("kind" = "del"),
                port_events: Counter ("kind" = "port") only port totals "port",
                neigh_events: Counter ("kind" = "neigh") only neigh,
            }
            "x_cpu_seconds_total" counter "CPU." {
                cpu_ns: Gauge (seconds) totals "cpu_ns" only neigh,
            }
            "x_mode" gauge only port "Mode." {
                mode: Gauge (one_hot "mode" ["a", "b", "c"]) totals "mode",
            }
            "x_depth" gauge only neigh "Depth." {
                depth: Gauge only neigh totals "mode",
            }
        }
    }

    #[test]
    fn a_table_gives_fields_entries_and_totals() {
        let s = Sample::default();
        s.new_events.add(3);
        s.del_events.inc();
        s.port_events.add(4);
        s.neigh_events.add(5);
        s.cpu_ns.set(7);
        s.mode.set(2);
        s.depth.set(9);
        let _: (&Counter, &Gauge) = (&s.del_events, &s.depth);
        assert_eq!(check::<Sample>(), Ok(()));
        let fields: Vec<_> = Sample::ENTRIES.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "new_events",
                "del_events",
                "port_events",
                "neigh_events",
                "cpu_ns",
                "mode",
                "depth"
            ]
        );
        let values: Vec<_> = Sample::ENTRIES.iter().map(|e| (e.read)(&s)).collect();
        assert_eq!(values, [3, 1, 4, 5, 7, 2, 9]);
        let e = &Sample::ENTRIES[5];
        assert_eq!(e.kind, MetricType::Gauge);
        assert_eq!(e.shape, Shape::OneHot("mode", &["a", "b", "c"]));
        assert_eq!(Sample::ENTRIES[1].help, "Events, by kind.");
        assert_eq!(Sample::ENTRIES[1].totals, None);
        let scopes: Vec<_> = Sample::ENTRIES.iter().map(|e| e.scope).collect();
        use Scope::*;
        assert_eq!(scopes, [Every, Every, Port, Neigh, Every, Port, Neigh]);
        assert_eq!(
            s.totals(Daemon::Portsyncd).to_string(),
            "totals: new 3 port 4 mode 2"
        );
        assert_eq!(
            s.totals(Daemon::Neighsyncd).to_string(),
            "totals: new 3 cpu_ns 7 mode 9"
        );
    }

    /// Tables `check` must refuse; nothing reads them but `check`.
    #[allow(dead_code)]
    mod refused {
        counters_table! {
            pub struct Split {
                "y_a_total" counter "A." { a1: Counter ("k" = "1") }
                "y_b_total" counter "B." { b: Counter }
                "y_a_total" counter "A." { a2: Counter ("k" = "2") }
            }
        }

        counters_table! {
            pub struct Unlabelled {
                "z_total" counter "Z." { z1: Counter, z2: Counter }
            }
        }

        counters_table! {
            pub struct BadName {
                "w_count" counter "W." { w: Counter totals "w" }
            }
        }

        counters_table! {
            pub struct TwiceInTotals {
                "v_total" counter "V." { v1: Counter ("k" = "1") totals "v", v2: Counter ("k" = "2") totals "v" }
            }
        }

        // Twice in neighsyncd's line only: one shared, one neighsyncd's.
        counters_table! {
            pub struct TwiceInOneScope {
                "u_total" counter "U." { u1: Counter totals "u" }
                "t_total" counter only neigh "T." { t1: Counter totals "u" }
            }
        }

        counters_table! {
            pub struct Prefixed {
                "portsyncd_s_total" counter "S." { s: Counter }
            }
        }

        counters_table! {
            pub struct TotalsNowhere {
                "r_total" counter only port "R." { r: Counter totals "r" only neigh }
            }
        }
    }

    #[test]
    fn check_refuses_what_cannot_be_exported() {
        let refused = [
            check::<refused::Split>(),
            check::<refused::Unlabelled>(),
            check::<refused::BadName>(),
            check::<refused::TwiceInTotals>(),
            check::<refused::TwiceInOneScope>(),
            check::<refused::Prefixed>(),
            check::<refused::TotalsNowhere>(),
        ];
        for r in &refused {
            assert!(r.is_err(), "{refused:?}");
        }
        let why = |i: usize| refused[i].clone().unwrap_err();
        assert!(why(0).contains("split"));
        assert!(why(2).contains("_total"));
        assert!(why(3).contains("portsyncd's line"), "{}", why(3));
        assert!(why(4).contains("neighsyncd's line"), "{}", why(4));
        assert!(why(5).contains("adds it"), "{}", why(5));
        assert!(why(6).contains("no daemon's line"), "{}", why(6));
    }
}
