//! SONiC's ProducerStateTable protocol on APPL_DB, byte-compatible with
//! sonic-swss-common `common/producerstatetable.cpp`.
//!
//! A set of key `K` with fields is one `EVALSHA` of SONiC's set script with
//! `KEYS = [<T>_CHANNEL@<db>, <T>_KEY_SET, _<T><sep>K × nfields]` and
//! `ARGV = ["G", K, f1, v1, …]`: the script does `SADD <T>_KEY_SET K`, one
//! `HSET _<T><sep>K f v` per field, and `PUBLISH <T>_CHANNEL@<db> G` when
//! the key was new in the set. Orchagent's ConsumerStateTable pops from there.

use crate::engine::redis::encode;

/// SONiC's set script, byte for byte (note the space after `then`).
pub const SET_SCRIPT: &str = "local added = redis.call('SADD', KEYS[2], ARGV[2])\n\
for i = 0, #KEYS - 3 do\n    redis.call('HSET', KEYS[3 + i], ARGV[3 + i * 2], ARGV[4 + i * 2])\nend\n\
if added > 0 then \n    redis.call('PUBLISH', KEYS[1], ARGV[1])\nend\n";

/// SHA1 of [`SET_SCRIPT`], as `SCRIPT LOAD` returns it and SONiC sends it.
pub const SET_SCRIPT_SHA: &str = "c7faa1a7e03275dadf2e8be09c0b6208cebff3f5";

/// SONiC's del script, byte for byte: `SADD <T>_KEY_SET K`, `SADD
/// <T>_DEL_SET K`, `DEL _<T><sep>K`, and the publish when the key was new.
pub const DEL_SCRIPT: &str = "local added = redis.call('SADD', KEYS[2], ARGV[2])\n\
redis.call('SADD', KEYS[4], ARGV[2])\nredis.call('DEL', KEYS[3])\n\
if added > 0 then \n    redis.call('PUBLISH', KEYS[1], ARGV[1])\nend\n";

/// SHA1 of [`DEL_SCRIPT`], as SONiC sends it.
pub const DEL_SCRIPT_SHA: &str = "88ba6312b8de850b3506966425174d8899aadd93";

/// SONiC's clear script (`ProducerStateTable::clear`, warm start): `DEL
/// <T>_KEY_SET`, every `_<T>*` staging hash, `DEL <T>_DEL_SET`.
pub const CLEAR_SCRIPT: &str = "redis.call('DEL', KEYS[1])\n\
local keys = redis.call('KEYS', KEYS[2] .. '*')\nfor i,k in pairs(keys) do\n    redis.call('DEL', k)\nend\n\
redis.call('DEL', KEYS[3])\n";

/// SHA1 of [`CLEAR_SCRIPT`].
pub const CLEAR_SCRIPT_SHA: &str = "a7a229c9946f655aebc07e29d5e4d8ff5055ded8";

/// The names one ProducerStateTable uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerTable {
    channel: Vec<u8>,
    key_set: Vec<u8>,
    del_set: Vec<u8>,
    /// `_<T><sep>`: prefix of the staging hashes.
    staging_prefix: Vec<u8>,
}

impl ProducerTable {
    /// The table `name` in the database numbered `db` whose key separator is `sep`.
    pub fn new(name: &str, db: u32, sep: u8) -> ProducerTable {
        let mut staging_prefix = format!("_{name}").into_bytes();
        staging_prefix.push(sep);
        ProducerTable {
            channel: format!("{name}_CHANNEL@{db}").into_bytes(),
            key_set: format!("{name}_KEY_SET").into_bytes(),
            del_set: format!("{name}_DEL_SET").into_bytes(),
            staging_prefix,
        }
    }

    /// `SCRIPT LOAD` of the set script.
    pub fn encode_script_load(out: &mut Vec<u8>) {
        encode::command(out, &[b"SCRIPT", b"LOAD", SET_SCRIPT.as_bytes()]);
    }

    /// `SCRIPT LOAD` of the del script.
    pub fn encode_del_script_load(out: &mut Vec<u8>) {
        encode::command(out, &[b"SCRIPT", b"LOAD", DEL_SCRIPT.as_bytes()]);
    }

    /// `<T>_KEY_SET`: the keys orchagent has yet to consume.
    pub fn key_set(&self) -> &[u8] {
        &self.key_set
    }

    /// The `EVALSHA` of the clear script: `KEYS = [<T>_KEY_SET, _<T>,
    /// <T>_DEL_SET]` (the staging prefix without its separator, as SONiC).
    pub fn clear_command(&self) -> Vec<Vec<u8>> {
        let staging = &self.staging_prefix[..self.staging_prefix.len() - 1];
        vec![
            b"EVALSHA".to_vec(),
            CLEAR_SCRIPT_SHA.as_bytes().to_vec(),
            b"3".to_vec(),
            self.key_set.clone(),
            staging.to_vec(),
            self.del_set.clone(),
        ]
    }

    /// The `EVALSHA` that deletes `key` (SONiC passes two `''` as the last
    /// arguments, literally).
    pub fn encode_del(&self, out: &mut Vec<u8>, key: &[u8]) {
        self.encode_del_parts(out, &[key]);
    }

    /// [`encode_del`](Self::encode_del) of the key made of `key` parts
    /// (`<ifname>`, `:`, `<ip>`), written without joining them.
    pub fn encode_del_parts(&self, out: &mut Vec<u8>, key: &[&[u8]]) {
        encode::push_command_header(out, 11);
        for arg in [b"EVALSHA".as_slice(), DEL_SCRIPT_SHA.as_bytes(), b"4"] {
            encode::push_arg(out, arg);
        }
        encode::push_arg(out, &self.channel);
        encode::push_arg(out, &self.key_set);
        self.push_staging(out, key);
        encode::push_arg(out, &self.del_set);
        encode::push_arg(out, b"G");
        encode::push_bulk_parts(out, key);
        encode::push_arg(out, b"''");
        encode::push_arg(out, b"''");
    }

    /// The `EVALSHA` that sets `key` to `fields`.
    pub fn encode_set(&self, out: &mut Vec<u8>, key: &[u8], fields: &[(&[u8], &[u8])]) {
        self.encode_set_parts(out, &[key], fields);
    }

    /// [`encode_set`](Self::encode_set) of the key made of `key` parts,
    /// written without joining them (no allocation: the hot path's).
    pub fn encode_set_parts(&self, out: &mut Vec<u8>, key: &[&[u8]], fields: &[(&[u8], &[u8])]) {
        encode::push_command_header(out, 7 + 3 * fields.len());
        encode::push_arg(out, b"EVALSHA");
        encode::push_arg(out, SET_SCRIPT_SHA.as_bytes());
        let mut digits = [0u8; 20];
        encode::push_arg(out, decimal(2 + fields.len(), &mut digits));
        encode::push_arg(out, &self.channel);
        encode::push_arg(out, &self.key_set);
        for _ in fields {
            self.push_staging(out, key);
        }
        encode::push_arg(out, b"G");
        encode::push_bulk_parts(out, key);
        for (f, v) in fields {
            encode::push_arg(out, f);
            encode::push_arg(out, v);
        }
    }

    /// `_<T><sep><key>` as one bulk string.
    fn push_staging(&self, out: &mut Vec<u8>, key: &[&[u8]]) {
        let mut parts: [&[u8]; 4] = [&self.staging_prefix, b"", b"", b""];
        let n = key.len().min(3);
        parts[1..=n].copy_from_slice(&key[..n]);
        encode::push_bulk_parts(out, &parts);
    }
}

/// The decimal text of a small count.
fn decimal(mut n: usize, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[i..];
        }
    }
}

/// One pending ProducerStateTable set, kept until Redis acknowledges it so
/// it can be sent again (after `NOSCRIPT` or a reconnect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PstSet {
    pub key: Vec<u8>,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl PstSet {
    /// A set of text fields (`PortConfigDone`, tests).
    pub fn new(key: &str, fields: &[(&str, &str)]) -> PstSet {
        let fields: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|(f, v)| (f.as_bytes(), v.as_bytes()))
            .collect();
        PstSet::from_bytes(key.as_bytes(), &fields)
    }

    /// A set of whatever bytes the key and fields hold (CONFIG_DB entries
    /// copied to APPL_DB: not necessarily UTF-8, passed on unchanged).
    pub fn from_bytes(key: &[u8], fields: &[(&[u8], &[u8])]) -> PstSet {
        PstSet {
            key: key.to_vec(),
            fields: fields
                .iter()
                .map(|(f, v)| (f.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    /// Encode it as the `EVALSHA` of `table`.
    pub fn encode(&self, table: &ProducerTable, out: &mut Vec<u8>) {
        let fields: Vec<(&[u8], &[u8])> = self
            .fields
            .iter()
            .map(|(f, v)| (f.as_slice(), v.as_slice()))
            .collect();
        table.encode_set(out, &self.key, &fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split a RESP array of bulk strings back into its arguments.
    fn args_of(resp: &[u8]) -> Vec<String> {
        let (r, used) = crate::engine::redis::reply::decode(resp).unwrap().unwrap();
        assert_eq!(used, resp.len());
        match r {
            crate::engine::redis::reply::Reply::Array(items) => items
                .iter()
                .map(|i| String::from_utf8(i.as_bytes().unwrap().to_vec()).unwrap())
                .collect(),
            other => panic!("not an array: {other:?}"),
        }
    }

    /// The quoted arguments of one `redis-cli MONITOR` line.
    fn monitor_args(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = &line[line.find('"').unwrap()..];
        while let Some(start) = rest.find('"') {
            let mut arg = String::new();
            let mut chars = rest[start + 1..].char_indices();
            let mut end = 0;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => arg.push('\n'),
                        Some((_, c)) => arg.push(c),
                        None => {}
                    },
                    '"' => {
                        end = start + 1 + i;
                        break;
                    }
                    c => arg.push(c),
                }
            }
            out.push(arg);
            rest = &rest[end + 1..];
        }
        out
    }

    const MONITOR: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sonic-reference/reference-monitor-4ports.txt"
    ));

    #[test]
    fn port_set_matches_sonics_recorded_evalsha() {
        let line = MONITOR
            .lines()
            .find(|l| l.contains("\"EVALSHA\"") && l.contains("\"Ethernet4\""))
            .unwrap();
        let table = ProducerTable::new("PORT_TABLE", 0, b':');
        let set = PstSet::new(
            "Ethernet4",
            &[
                ("lanes", "5,6,7,8"),
                ("alias", "etp2"),
                ("index", "1"),
                ("speed", "100000"),
                ("mtu", "9100"),
                ("admin_status", "up"),
                ("fec", "rs"),
            ],
        );
        let mut out = Vec::new();
        set.encode(&table, &mut out);
        assert_eq!(args_of(&out), monitor_args(line));
    }

    #[test]
    fn port_config_done_matches_sonic() {
        let line = MONITOR
            .lines()
            .find(|l| l.contains("\"EVALSHA\"") && l.contains("PortConfigDone"))
            .unwrap();
        let table = ProducerTable::new("PORT_TABLE", 0, b':');
        let mut out = Vec::new();
        PstSet::new("PortConfigDone", &[("count", "4")]).encode(&table, &mut out);
        assert_eq!(args_of(&out), monitor_args(line));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_encoded_unchanged() {
        let table = ProducerTable::new("PORT_TABLE", 0, b':');
        let set = PstSet::from_bytes(b"Eth\xff0", &[(b"alias\xfe", b"\xff\xfe")]);
        let mut out = Vec::new();
        set.encode(&table, &mut out);
        let (r, _) = crate::engine::redis::reply::decode(&out).unwrap().unwrap();
        let crate::engine::redis::reply::Reply::Array(items) = r else {
            panic!("not an array")
        };
        let args: Vec<&[u8]> = items.iter().map(|i| i.as_bytes().unwrap()).collect();
        assert_eq!(
            args[5..],
            [
                &b"_PORT_TABLE:Eth\xff0"[..],
                b"G",
                b"Eth\xff0",
                b"alias\xfe",
                b"\xff\xfe"
            ]
        );
    }

    #[test]
    fn script_is_sonics() {
        let line = MONITOR
            .lines()
            .find(|l| l.contains("\"SCRIPT\" \"LOAD\""))
            .unwrap();
        let mut out = Vec::new();
        ProducerTable::encode_script_load(&mut out);
        assert_eq!(args_of(&out), monitor_args(line));
    }

    const NEIGH_MONITOR: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sonic-reference/reference-neigh-monitor.txt"
    ));

    /// neighsyncd's set and del, against SONiC's recorded command stream.
    #[test]
    fn neighbor_set_and_del_match_sonics_recorded_evalshas() {
        let table = ProducerTable::new("NEIGH_TABLE", 0, b':');
        let set_line = NEIGH_MONITOR
            .lines()
            .find(|l| l.contains(SET_SCRIPT_SHA) && l.contains("\"Ethernet0:2001:db8::2\""))
            .unwrap();
        let mut out = Vec::new();
        table.encode_set(
            &mut out,
            b"Ethernet0:2001:db8::2",
            &[(b"neigh", b"02:00:00:00:00:03"), (b"family", b"IPv6")],
        );
        assert_eq!(args_of(&out), monitor_args(set_line));

        let del_line = NEIGH_MONITOR
            .lines()
            .find(|l| l.contains(DEL_SCRIPT_SHA) && l.contains("\"Ethernet0:10.0.0.4\""))
            .unwrap();
        let mut out = Vec::new();
        table.encode_del(&mut out, b"Ethernet0:10.0.0.4");
        assert_eq!(args_of(&out), monitor_args(del_line));

        let load = NEIGH_MONITOR
            .lines()
            .find(|l| l.contains("\"SCRIPT\" \"LOAD\"") && l.contains("KEYS[4], ARGV[2]"))
            .unwrap();
        let mut out = Vec::new();
        ProducerTable::encode_del_script_load(&mut out);
        assert_eq!(args_of(&out), monitor_args(load));

        let clear = NEIGH_MONITOR
            .lines()
            .find(|l| l.contains(CLEAR_SCRIPT_SHA))
            .unwrap();
        let args: Vec<String> = table
            .clear_command()
            .iter()
            .map(|a| String::from_utf8(a.clone()).unwrap())
            .collect();
        assert_eq!(args, monitor_args(clear));
    }

    #[test]
    fn the_clear_scripts_sha_is_its_text_as_sonic_loads_it() {
        let load = NEIGH_MONITOR
            .lines()
            .find(|l| l.contains("\"SCRIPT\" \"LOAD\"") && l.contains("redis.call('DEL', KEYS[1])"))
            .unwrap();
        assert_eq!(monitor_args(load)[2], CLEAR_SCRIPT);
    }

    /// The key written in parts, as neighsyncd's hot path does, is the
    /// same command as the key joined.
    #[test]
    fn keys_in_parts_encode_as_the_joined_key() {
        let table = ProducerTable::new("NEIGH_TABLE", 0, b':');
        let fields: [(&[u8], &[u8]); 2] = [(b"neigh", b"02:00:00:00:00:03"), (b"family", b"IPv6")];
        let (mut joined, mut parts) = (Vec::new(), Vec::new());
        table.encode_set(&mut joined, b"Ethernet0:2001:db8::2", &fields);
        table.encode_set_parts(&mut parts, &[b"Ethernet0", b":", b"2001:db8::2"], &fields);
        assert_eq!(joined, parts);
        let (mut joined, mut parts) = (Vec::new(), Vec::new());
        table.encode_del(&mut joined, b"Ethernet0:10.0.0.4");
        table.encode_del_parts(&mut parts, &[b"Ethernet0", b":", b"10.0.0.4"]);
        assert_eq!(joined, parts);
    }
}
