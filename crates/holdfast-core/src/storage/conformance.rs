//! What every backend must do, checked the same way on each (restic's backend test suite is
//! the model): the core's tests run it on the local folder, memory and the decorators, and
//! the CLI's tests on a real S3 server. Call it on an empty storage; it leaves it empty.

use super::Storage;
use crate::error::Error;

fn fail(what: &str, why: impl std::fmt::Display) -> String {
    format!("{what}: {why}")
}

/// Runs every check; the first that fails is returned, named.
pub fn check(s: &Storage) -> Result<(), String> {
    let pack = "data/c0/c0ffee";
    let nested = "data/c1/c1a0";
    let snap = "snapshots/5a";
    let empty = "index/e0";

    // Nothing there yet.
    match s.read(pack) {
        Err(Error::NotFound(_)) => {}
        other => return Err(fail("reading a missing object", format!("{other:?}"))),
    }
    match s.read_range(pack, 0, 1) {
        Err(Error::NotFound(_)) => {}
        other => {
            return Err(fail(
                "ranged read of a missing object",
                format!("{other:?}"),
            ))
        }
    }
    if s.exists(pack).map_err(|e| fail("exists", e))? {
        return Err("a missing object exists".into());
    }
    let l = s
        .list("data/")
        .map_err(|e| fail("listing a missing folder", e))?;
    if !l.is_empty() {
        return Err(format!("a missing folder lists {} objects", l.len()));
    }
    s.delete(pack)
        .map_err(|e| fail("deleting a missing object", e))?;

    // Whole objects: small, empty, and larger than a multipart part (8 MiB).
    let small: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let big: Vec<u8> = (0..9 * 1024 * 1024 + 17)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.write(pack, small.clone())
        .map_err(|e| fail("writing", e))?;
    s.write(nested, big.clone())
        .map_err(|e| fail("writing 9 MiB", e))?;
    s.write(snap, b"{}".to_vec())
        .map_err(|e| fail("writing", e))?;
    s.write(empty, Vec::new())
        .map_err(|e| fail("writing an empty object", e))?;
    if s.read(pack).map_err(|e| fail("reading", e))? != small {
        return Err("read back other bytes than written".into());
    }
    if s.read(nested).map_err(|e| fail("reading 9 MiB", e))? != big {
        return Err("read back other bytes than written (9 MiB)".into());
    }
    if !s
        .read(empty)
        .map_err(|e| fail("reading an empty object", e))?
        .is_empty()
    {
        return Err("an empty object read back non-empty".into());
    }
    if !s.exists(pack).map_err(|e| fail("exists", e))? {
        return Err("a written object does not exist".into());
    }

    // Ranges: inside, at the end, and past the end (an error, never a short read).
    let r = s
        .read_range(pack, 100, 50)
        .map_err(|e| fail("ranged read", e))?;
    if r != small[100..150] {
        return Err("a ranged read returned other bytes".into());
    }
    let r = s
        .read_range(nested, big.len() as u64 - 10, 10)
        .map_err(|e| fail("ranged read at the end", e))?;
    if r != big[big.len() - 10..] {
        return Err("a ranged read at the end returned other bytes".into());
    }
    if s.read_range(pack, small.len() as u64 - 5, 10).is_ok() {
        return Err("a ranged read past the end succeeded".into());
    }

    // Many reads keep their order and report each missing object on its own.
    let paths = vec![
        snap.to_string(),
        "snapshots/missing".into(),
        pack.to_string(),
    ];
    let many = s.read_many(&paths);
    match many.as_slice() {
        [Ok(a), Err(Error::NotFound(_)), Ok(c)] if a == b"{}" && *c == small => {}
        other => {
            return Err(fail(
                "read_many",
                format!(
                    "{:?}",
                    other
                        .iter()
                        .map(|r| r.as_ref().map(Vec::len))
                        .collect::<Vec<_>>()
                ),
            ))
        }
    }

    // Listing: recursive, relative paths, names, sizes and modification times.
    let mut l = s.list("data/").map_err(|e| fail("listing", e))?;
    l.sort_by(|a, b| a.path.cmp(&b.path));
    let got: Vec<(&str, &str, Option<u64>)> = l
        .iter()
        .map(|e| (e.path.as_str(), e.name.as_str(), e.size))
        .collect();
    let want = vec![
        (pack, "c0ffee", Some(small.len() as u64)),
        (nested, "c1a0", Some(big.len() as u64)),
    ];
    if got != want {
        return Err(fail("listing data/", format!("{got:?}, wanted {want:?}")));
    }
    let now = std::time::SystemTime::now();
    for e in &l {
        let Some(m) = e.modified else {
            return Err(format!(
                "{} is listed without a modification time (lock staleness needs it)",
                e.path
            ));
        };
        let skew = now.duration_since(m).unwrap_or_else(|e| e.duration());
        if skew > std::time::Duration::from_secs(600) {
            return Err(format!(
                "{} is listed with a modification time {skew:?} off",
                e.path
            ));
        }
    }
    let l = s.list("snapshots/").map_err(|e| fail("listing", e))?;
    if l.len() != 1 || l[0].path != snap || l[0].name != "5a" {
        return Err(fail("listing snapshots/", format!("{l:?}")));
    }

    // Deletes.
    for p in [pack, nested, snap, empty] {
        s.delete(p).map_err(|e| fail("deleting", e))?;
        match s.read(p) {
            Err(Error::NotFound(_)) => {}
            other => {
                return Err(fail(
                    "reading a deleted object",
                    format!("{:?}", other.map(|b| b.len())),
                ))
            }
        }
    }
    for dir in ["data/", "snapshots/", "index/"] {
        let l = s.list(dir).map_err(|e| fail("listing", e))?;
        if !l.is_empty() {
            return Err(format!(
                "{dir} still lists {} objects after deletes",
                l.len()
            ));
        }
    }
    Ok(())
}
