//! Repeated errors, logged without flooding: the first of a kind is
//! logged, the rest are counted, and one line sums them up once they stop
//! or at most every [`SUMMARY_NS`]. A busy Redis answering `BUSY` to
//! every write was 3k lines in 2 s; now it is one line, then one per
//! interval with the count.
//!
//! A kind is a short key the caller picks (a Redis error code and the
//! connection, say). Pure: time comes in as an argument.

/// At most one summary line per kind this often.
pub const SUMMARY_NS: u64 = 10_000_000_000;
/// Kinds followed at once; beyond that the oldest is summed up and dropped.
const KINDS: usize = 16;

/// What the caller should log now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Say {
    /// The first of its kind (in a while): log it in full.
    First,
    /// Counted; nothing to log.
    Quiet,
}

#[derive(Debug, Clone)]
struct Kind {
    key: String,
    /// Repeats not logged since the last line.
    suppressed: u64,
    /// When the last line for this kind was logged.
    logged_ns: u64,
}

/// Counts repeats per kind; see the module comment.
#[derive(Debug, Default)]
pub struct Repeats {
    kinds: Vec<Kind>,
}

impl Repeats {
    /// One occurrence of `key` at `now_ns`.
    pub fn note(&mut self, key: &str, now_ns: u64) -> Say {
        if let Some(k) = self.kinds.iter_mut().find(|k| k.key == key) {
            k.suppressed += 1;
            return Say::Quiet;
        }
        if self.kinds.len() == KINDS {
            self.kinds.remove(0);
        }
        self.kinds.push(Kind {
            key: key.to_string(),
            suppressed: 0,
            logged_ns: now_ns,
        });
        Say::First
    }

    /// Summaries due at `now_ns`: `(key, repeats)` for every kind with
    /// repeats whose last line is [`SUMMARY_NS`] old, and every kind
    /// forgotten because it stayed quiet that long (so the next one is
    /// logged in full again).
    pub fn due(&mut self, now_ns: u64) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.kinds.retain_mut(|k| {
            if now_ns.saturating_sub(k.logged_ns) < SUMMARY_NS {
                return true;
            }
            if k.suppressed == 0 {
                return false;
            }
            out.push((k.key.clone(), k.suppressed));
            k.suppressed = 0;
            k.logged_ns = now_ns;
            true
        });
        out
    }

    /// Whether anything is counted or followed (a summary may come).
    pub fn pending(&self) -> bool {
        !self.kinds.is_empty()
    }
}

/// `text` cut to `max` bytes (on a character boundary) with the number of
/// bytes left out, for log lines that quote what a peer sent.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_the_rest_summed_up_each_interval() {
        let mut r = Repeats::default();
        assert_eq!(r.note("BUSY", 0), Say::First);
        for t in 1..3000 {
            assert_eq!(r.note("BUSY", t), Say::Quiet);
        }
        assert_eq!(r.note("OOM", 5), Say::First, "kinds are apart");
        assert!(r.due(SUMMARY_NS - 1).is_empty());
        assert_eq!(r.due(SUMMARY_NS), vec![("BUSY".to_string(), 2999)]);
        assert_eq!(r.note("OOM", SUMMARY_NS + 4), Say::Quiet, "still followed");
        assert_eq!(r.due(SUMMARY_NS + 5), vec![("OOM".to_string(), 1)]);
        // Quiet for a whole interval: forgotten, so the next one is logged.
        assert!(r.due(2 * SUMMARY_NS + 5).is_empty());
        assert_eq!(r.note("OOM", 2 * SUMMARY_NS + 6), Say::First);
        assert_eq!(r.note("BUSY", 2 * SUMMARY_NS + 6), Say::First);
        assert_eq!(r.note("BUSY", 2 * SUMMARY_NS + 7), Say::Quiet);
        assert_eq!(r.due(3 * SUMMARY_NS + 6), vec![("BUSY".to_string(), 1)]);
        assert!(r.due(5 * SUMMARY_NS).is_empty());
        assert_eq!(r.note("BUSY", 5 * SUMMARY_NS), Say::First);
    }

    #[test]
    fn kinds_are_bounded() {
        let mut r = Repeats::default();
        for i in 0..100 {
            assert_eq!(r.note(&format!("E{i}"), 0), Say::First);
        }
        assert_eq!(r.kinds.len(), KINDS);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(50_000);
        let c = cut(&long, 101);
        assert!(c.starts_with(&"é".repeat(50)));
        assert!(c.ends_with("(99900 more bytes)"), "{c}");
    }
}
