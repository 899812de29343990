//! Trees: one directory's listing, stored as a deduplicated blob.
//!
//! A directory whose entries did not change produces byte-identical JSON and so the same blob
//! id: an unchanged subtree costs nothing in a new snapshot. Entries are sorted by the raw bytes
//! of their names so the encoding is canonical.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// Bytes that are usually, but not always, UTF-8 (file names, link targets, xattr names).
/// JSON holds them as a string when they are UTF-8 and as `{"hex": "…"}` otherwise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawName(pub Vec<u8>);

impl RawName {
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl From<&OsStr> for RawName {
    fn from(s: &OsStr) -> Self {
        RawName(s.as_bytes().to_vec())
    }
}

impl From<OsString> for RawName {
    fn from(s: OsString) -> Self {
        RawName(s.into_vec())
    }
}

impl From<&str> for RawName {
    fn from(s: &str) -> Self {
        RawName(s.as_bytes().to_vec())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawNameRepr {
    Text(String),
    Bytes { hex: String },
}

impl Serialize for RawName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => s.serialize_str(t),
            Err(_) => RawNameRepr::Bytes {
                hex: hex::encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RawName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawNameRepr::deserialize(d)? {
            RawNameRepr::Text(t) => Ok(RawName(t.into_bytes())),
            RawNameRepr::Bytes { hex } => hex::decode(hex)
                .map(RawName)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Seconds and nanoseconds since the Unix epoch, as `[secs, nanos]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Timestamp(pub i64, pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Chardev,
    Blockdev,
    Socket,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: RawName,
    #[serde(with = "hex::serde")]
    pub value: Vec<u8>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: RawName,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    pub mtime: Timestamp,
    pub atime: Timestamp,
    pub ctime: Timestamp,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inode: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dev: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links: u64,
    /// Device number of character and block devices.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// The file had holes; restore recreates runs of zeros as holes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sparse: bool,
}

impl Node {
    /// Same metadata apart from content, times of access and the inode bookkeeping.
    pub fn same_metadata(&self, other: &Node) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && self.uid == other.uid
            && self.gid == other.gid
            && self.mtime == other.mtime
            && self.target == other.target
            && self.xattrs == other.xattrs
            && self.rdev == other.rdev
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts entries canonically.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("trees serialise")
    }

    /// Parses a tree and rejects names that could escape a restore target.
    pub fn decode(id: &BlobId, bytes: &[u8]) -> Result<Tree> {
        let tree: Tree = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("tree {}", id.short()), e.to_string()))?;
        for w in tree.nodes.windows(2) {
            if w[0].name >= w[1].name {
                return Err(Error::corrupt(
                    format!("tree {}", id.short()),
                    format!(
                        "entries out of order or duplicated at '{}'",
                        w[1].name.lossy()
                    ),
                ));
            }
        }
        for n in &tree.nodes {
            check_name(&n.name)
                .map_err(|why| Error::corrupt(format!("tree {}", id.short()), why))?;
        }
        Ok(tree)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.0.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// A name is one path component: not empty, `.`, `..`, and without `/` or NUL.
pub fn check_name(name: &RawName) -> std::result::Result<(), String> {
    let b = &name.0;
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(format!("unsafe entry name '{}'", name.lossy()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: Vec<u8>) -> Node {
        Node {
            name: RawName(name),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1,
            gid: 2,
            user: Some("u".into()),
            group: None,
            size: 3,
            mtime: Timestamp(1, 2),
            atime: Timestamp(3, 4),
            ctime: Timestamp(5, 6),
            inode: 7,
            dev: 8,
            links: 1,
            rdev: 0,
            target: None,
            content: vec![BlobId([9; 32])],
            subtree: None,
            xattrs: vec![Xattr {
                name: RawName(b"user.x".to_vec()),
                value: vec![0, 255],
            }],
            sparse: false,
        }
    }

    proptest! {
        #[test]
        fn tree_round_trip(names in proptest::collection::btree_set(proptest::collection::vec(1u8..=255, 1..20), 0..20)) {
            let names: Vec<_> = names.into_iter().filter(|n| n != b"." && n != b".." && !n.contains(&b'/')).collect();
            let mut t = Tree { nodes: names.into_iter().map(node).collect() };
            t.sort();
            let id = BlobId([0; 32]);
            let back = Tree::decode(&id, &t.encode()).unwrap();
            prop_assert_eq!(back, t);
        }
    }

    #[test]
    fn rejects_hostile_names() {
        let id = BlobId([0; 32]);
        for bad in [&b".."[..], b".", b"a/b", b""] {
            let t = Tree {
                nodes: vec![node(bad.to_vec())],
            };
            assert!(Tree::decode(&id, &t.encode()).is_err(), "{bad:?}");
        }
        let dup = Tree {
            nodes: vec![node(b"a".to_vec()), node(b"a".to_vec())],
        };
        assert!(Tree::decode(&id, &dup.encode()).is_err());
        let non_utf8 = Tree {
            nodes: vec![node(vec![0xff, 0xfe])],
        };
        let json = String::from_utf8(non_utf8.encode()).unwrap();
        assert!(json.contains("\"hex\":\"fffe\""));
        assert_eq!(Tree::decode(&id, json.as_bytes()).unwrap(), non_utf8);
    }
}
