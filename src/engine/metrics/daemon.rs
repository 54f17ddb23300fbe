//! Which daemon the engine runs as, and which metric families it exports.
//!
//! Both daemons share one counters table ([`Counters`](super::Counters))
//! and one metrics thread. A family's [`Scope`] says who exports it; the
//! metrics thread writes the ones the running [`Daemon`] exports, each
//! name prefixed `<daemon>_` (the standard `process_*` families are not).
//! The `totals:` line and `docs/metrics.md` follow the same choice.

/// Which daemons export a metric family (or one series of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every daemon: what the engine counts (netlink, dumps, the loop,
    /// Redis, samples, CPU, the reactor, fds).
    Every,
    /// portsyncd only (table syntax `only port`).
    Port,
    /// neighsyncd only (table syntax `only neigh`).
    Neigh,
}

impl Scope {
    /// The scope of a table field: its own `only` if it has one, else its
    /// family's. A field may only narrow its family's scope; anything else
    /// fails the build (the table is a constant).
    pub const fn narrow(family: Scope, field: Option<Scope>) -> Scope {
        match (family, field) {
            (family, None) => family,
            (Scope::Every, Some(field)) => field,
            (Scope::Port, Some(Scope::Port)) => Scope::Port,
            (Scope::Neigh, Some(Scope::Neigh)) => Scope::Neigh,
            _ => panic!("a field's `only` must narrow its family's scope"),
        }
    }

    /// How `docs/metrics.md` names it.
    pub const fn daemons(self) -> &'static str {
        match self {
            Scope::Every => "every daemon",
            Scope::Port => "portsyncd only",
            Scope::Neigh => "neighsyncd only",
        }
    }
}

/// A daemon built on the engine: the prefix of its metric names and the
/// families it exports. [`launch`](crate::engine::runtime::launch::launch)
/// finds it by name (`"portsyncd"`, `"neighsyncd"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Portsyncd,
    Neighsyncd,
}

impl Daemon {
    /// Every daemon, in the order `docs/metrics.md` lists them.
    pub const ALL: [Daemon; 2] = [Daemon::Portsyncd, Daemon::Neighsyncd];

    /// Latency samples its loop may queue for the metrics thread:
    /// portsyncd [`SAMPLE_CHANNEL_CAPACITY`](super::SAMPLE_CHANNEL_CAPACITY);
    /// neighsyncd half, for memory (the metrics thread drains every 10 ms
    /// while samples flow, 100 ms at most when idle: 32k covers a burst at
    /// the kernel's peak neighbor rate starting during that sleep).
    pub const fn sample_capacity(self) -> usize {
        match self {
            Daemon::Portsyncd => super::SAMPLE_CHANNEL_CAPACITY,
            Daemon::Neighsyncd => super::SAMPLE_CHANNEL_CAPACITY / 2,
        }
    }

    /// Its program name.
    pub const fn name(self) -> &'static str {
        match self {
            Daemon::Portsyncd => "portsyncd",
            Daemon::Neighsyncd => "neighsyncd",
        }
    }

    /// The daemon called `name`, if the engine knows it.
    pub fn from_name(name: &str) -> Option<Daemon> {
        Daemon::ALL.into_iter().find(|d| d.name() == name)
    }

    /// What its exported names start with: `<name>_`.
    pub const fn prefix(self) -> &'static str {
        match self {
            Daemon::Portsyncd => "portsyncd_",
            Daemon::Neighsyncd => "neighsyncd_",
        }
    }

    /// Whether it exports a family (or series) of this scope.
    pub const fn exports(self, scope: Scope) -> bool {
        matches!(
            (self, scope),
            (_, Scope::Every)
                | (Daemon::Portsyncd, Scope::Port)
                | (Daemon::Neighsyncd, Scope::Neigh)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_daemon_exports_the_shared_scope_and_its_own() {
        use Daemon::*;
        assert!(Portsyncd.exports(Scope::Every) && Neighsyncd.exports(Scope::Every));
        assert!(Portsyncd.exports(Scope::Port) && !Portsyncd.exports(Scope::Neigh));
        assert!(Neighsyncd.exports(Scope::Neigh) && !Neighsyncd.exports(Scope::Port));
        for d in Daemon::ALL {
            assert_eq!(Daemon::from_name(d.name()), Some(d));
            assert_eq!(d.prefix(), format!("{}_", d.name()));
        }
        assert_eq!(Daemon::from_name("fdbsyncd"), None);
    }

    #[test]
    fn a_field_narrows_its_family() {
        assert_eq!(Scope::narrow(Scope::Every, None), Scope::Every);
        assert_eq!(
            Scope::narrow(Scope::Every, Some(Scope::Neigh)),
            Scope::Neigh
        );
        assert_eq!(Scope::narrow(Scope::Port, None), Scope::Port);
        assert_eq!(Scope::narrow(Scope::Port, Some(Scope::Port)), Scope::Port);
        let widened = std::panic::catch_unwind(|| Scope::narrow(Scope::Port, Some(Scope::Neigh)));
        assert!(widened.is_err());
    }
}
