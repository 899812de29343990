//! The part of a URL that names something inside a snapshot: `ID`, `ID/tree/PATH`,
//! `ID/file/PATH`, `ID/tar/PATH`. File names are bytes (not always UTF-8), so PATH is taken
//! from the raw, percent-encoded URL and decoded here, component by component. A path only
//! ever walks a snapshot's trees, and anything that is not a plain name (`..`, `.`, an empty
//! component, an encoded `/`, a NUL) is refused before any lookup.

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What is asked of the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The snapshot's own page.
    Summary,
    /// A folder's listing or a file's details.
    Tree,
    /// A file's bytes.
    File,
    /// A folder as a tar.gz stream.
    Tar,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPath {
    /// A snapshot id or a prefix of one (hex).
    pub id: String,
    pub target: Target,
    /// Names from the snapshot's root.
    pub names: Vec<Vec<u8>>,
}

/// Parses `rest`, the raw path after `/snapshots/`.
pub fn parse(rest: &str) -> Result<SnapshotPath, String> {
    let (id, after) = match rest.split_once('/') {
        Some((id, after)) => (id, Some(after)),
        None => (rest, None),
    };
    if id.len() < 8 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a snapshot id is 8 to 64 hex digits".into());
    }
    let (target, path) = match after {
        None | Some("") => (Target::Summary, ""),
        Some(a) => {
            let (what, path) = a.split_once('/').unwrap_or((a, ""));
            let t = match what {
                "tree" => Target::Tree,
                "file" => Target::File,
                "tar" => Target::Tar,
                _ => return Err(format!("unknown view '{}'", what.escape_default())),
            };
            (t, path)
        }
    };
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut names = Vec::new();
    if !path.is_empty() {
        for raw in path.split('/') {
            let name: Vec<u8> = percent_decode(raw.as_bytes()).collect();
            if name.is_empty() || name == b"." || name == b".." {
                return Err(
                    "a path in a snapshot is made of plain names (no '.', '..' or '//')".into(),
                );
            }
            if name.contains(&b'/') || name.contains(&0) {
                return Err("a name in a snapshot path has no '/' and no NUL".into());
            }
            names.push(name);
        }
    }
    Ok(SnapshotPath {
        id: id.to_ascii_lowercase(),
        target,
        names,
    })
}

/// Everything but unreserved characters is encoded in a path component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One name, encoded for a URL path (bytes that are not UTF-8 included).
pub fn encode_name(name: &[u8]) -> String {
    percent_encoding::percent_encode(name, COMPONENT).to_string()
}

/// `/snapshots/ID/VIEW/a/b` for `names`.
pub fn url(id: &str, view: &str, names: &[Vec<u8>]) -> String {
    let mut s = format!("/snapshots/{id}/{view}");
    for n in names {
        s.push('/');
        s.push_str(&encode_name(n));
    }
    s
}

/// A query value, encoded.
pub fn query_value(v: &str) -> String {
    utf8_percent_encode(v, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_parse_and_round_trip() {
        let p = parse("0123abcd/tree/etc/caf%C3%A9/b%20c").unwrap();
        assert_eq!(p.target, Target::Tree);
        assert_eq!(
            p.names,
            vec![b"etc".to_vec(), "café".as_bytes().to_vec(), b"b c".to_vec()]
        );
        assert_eq!(
            url("0123abcd", "tree", &p.names),
            "/snapshots/0123abcd/tree/etc/caf%C3%A9/b%20c"
        );
        // Bytes that are not UTF-8 survive.
        let p = parse("0123abcd/file/%FF%FE").unwrap();
        assert_eq!(p.names, vec![vec![0xff, 0xfe]]);
        assert_eq!(parse("0123ABCD").unwrap().target, Target::Summary);
        assert_eq!(parse("0123abcd/tar/").unwrap().names.len(), 0);
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "0123abcd/tree/../etc/passwd",
            "0123abcd/tree/a/%2e%2e/b",
            "0123abcd/tree/a//b",
            "0123abcd/tree/a%2Fb",
            "0123abcd/file/a%00b",
            "0123abcd/tree/.",
            "0123abcd/raw/x",
            "../../etc",
            "0123",
            "zzzzzzzz/tree",
            "/etc/passwd",
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
