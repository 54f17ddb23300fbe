//! One table of counters per daemon: each entry says once what a field is,
//! how it is exported and whether the `totals:` log line shows it.
//!
//! `counters_table!` turns the table into three things: the struct of
//! [`Counter`](super::Counter) and [`Gauge`](super::Gauge) fields the loop
//! writes (plain fields, so `counters.enobufs.inc()` is the same relaxed
//! load and store as a hand-written struct), a static [`Entry`] list the
//! metrics thread walks for the Prometheus text
//! ([`render::table`](super::render::table)) and `docs/metrics.md`
//! ([`docs`](super::docs)), and a `totals()` method for the one-line log
//! summary. A new counter is one new line in the table.
//!
//! ```text
//! counters_table! {
//!     /// Doc of the struct.
//!     pub struct Counters {
//!         // One family: exported name, TYPE, HELP, then its fields.
//!         "portsyncd_netlink_datagrams_total" counter "Netlink datagrams received." {
//!             datagrams: Counter totals "datagrams",
//!         }
//!         // A family split by a label: one field per label value.
//!         "portsyncd_netlink_messages_total" counter "Netlink messages received, by type." {
//!             msgs_newlink: Counter ("type" = "newlink") totals "newlink",
//!             msgs_done: Counter ("type" = "done"),
//!         }
//!         "portsyncd_loop_cpu_seconds_total" counter "CPU time used by the loop thread." {
//!             /// Extra doc for the field (after the HELP text).
//!             loop_cpu_ns: Gauge (seconds),
//!         }
//!         "portsyncd_reactor" gauge "The reactor in use (1 for the one in use)." {
//!             reactor: Gauge (one_hot "reactor" ["epoll", "io_uring"]),
//!         }
//!     }
//! }
//! ```
//!
//! Families are written in export order, and the `totals:` line follows
//! the same order.

use std::fmt;

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
    /// The exported family name; a family's entries are adjacent.
    pub name: &'static str,
    pub kind: MetricType,
    /// The `HELP` text of the family.
    pub help: &'static str,
    pub shape: Shape,
    /// The word before the value in the `totals:` line, if it is shown.
    pub totals: Option<&'static str>,
    /// The field's current value (a relaxed load).
    pub read: fn(&C) -> u64,
}

/// A struct declared by `counters_table!`, with its table in field order.
pub trait CountersTable: Sized + 'static {
    const ENTRIES: &'static [Entry<Self>];
}

/// The one-line summary of a counters table: `totals:` then `word value`
/// for each entry marked `totals`, in table order.
pub struct Totals<'a, C>(pub &'a C);

impl<C: CountersTable> fmt::Display for Totals<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("totals:")?;
        for e in C::ENTRIES {
            if let Some(word) = e.totals {
                write!(f, " {word} {}", (e.read)(self.0))?;
            }
        }
        Ok(())
    }
}

/// What makes a table unexportable, or `Ok`: a family split in two, its
/// entries disagreeing on TYPE or HELP, a counter not ending `_total`, a
/// label value or `totals` word used twice, an empty HELP. The tests of
/// each table call it.
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
            if earlier.iter().any(|p| p.totals == Some(w)) {
                return Err(format!("{f}: totals word {w} used twice"));
            }
        }
    }
    Ok(())
}

/// Declare a daemon's counters table: the struct, its [`CountersTable`]
/// entries and `totals()`. See the [module](self) for the syntax.
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
    (@totals) => { None };
    (@totals $word:literal) => { Some($word) };
    (
        $(#[$struct_attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $family:literal $kind:ident $help:literal {
                    $(
                        $(#[$field_attr:meta])*
                        $field:ident : $store:ident
                            $( ( $($shape:tt)* ) )?
                            $( totals $word:literal )?
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
                        totals: $crate::engine::metrics::counters_table!(@totals $($word)?),
                        read: |c: &$name| c.$field.get(),
                    },
                )+)+
            ];
        }

        impl $name {
            /// The one-line summary for the log: `totals:` then `word value`
            /// for each entry of the table marked `totals`, in table order.
            pub fn totals(&self) -> $crate::engine::metrics::table::Totals<'_, $name> {
                $crate::engine::metrics::table::Totals(self)
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
        /// A table as another daemon would declare it.
        struct Sample {
            "x_events_total" counter "Events, by kind." {
                /// More about this one.
                new_events: Counter ("kind" = "new") totals "new",
                del_events: Counter ("kind" = "del"),
            }
            "x_cpu_seconds_total" counter "CPU." {
                cpu_ns: Gauge (seconds) totals "cpu_ns",
            }
            "x_mode" gauge "Mode." {
                mode: Gauge (one_hot "mode" ["a", "b", "c"]),
            }
            "x_depth" gauge "Depth." {
                depth: Gauge,
            }
        }
    }

    #[test]
    fn a_table_gives_fields_entries_and_totals() {
        let s = Sample::default();
        s.new_events.add(3);
        s.del_events.inc();
        s.cpu_ns.set(7);
        s.mode.set(2);
        s.depth.set(9);
        let _: (&Counter, &Gauge) = (&s.del_events, &s.depth);
        assert_eq!(check::<Sample>(), Ok(()));
        let fields: Vec<_> = Sample::ENTRIES.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["new_events", "del_events", "cpu_ns", "mode", "depth"]
        );
        let values: Vec<_> = Sample::ENTRIES.iter().map(|e| (e.read)(&s)).collect();
        assert_eq!(values, [3, 1, 7, 2, 9]);
        let e = &Sample::ENTRIES[3];
        assert_eq!(e.kind, MetricType::Gauge);
        assert_eq!(e.shape, Shape::OneHot("mode", &["a", "b", "c"]));
        assert_eq!(Sample::ENTRIES[1].help, "Events, by kind.");
        assert_eq!(Sample::ENTRIES[1].totals, None);
        assert_eq!(s.totals().to_string(), "totals: new 3 cpu_ns 7");
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
    }

    #[test]
    fn check_refuses_what_cannot_be_exported() {
        let refused = [
            check::<refused::Split>(),
            check::<refused::Unlabelled>(),
            check::<refused::BadName>(),
            check::<refused::TwiceInTotals>(),
        ];
        for r in &refused {
            assert!(r.is_err(), "{refused:?}");
        }
        assert!(refused[0].as_ref().unwrap_err().contains("split"));
        assert!(refused[2].as_ref().unwrap_err().contains("_total"));
    }
}
