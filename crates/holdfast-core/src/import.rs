//! Import tar archives (plain, gzip or zstd) as snapshots.
//!
//! Sites adopting holdfast have years of `backup-dss-data-2026-11-20.tar.gz` files from the
//! documented cron script; importing them keeps that history restorable from one place, and
//! deduplicated (consecutive daily archives share almost everything). An archive is untrusted
//! input: absolute names, `..` components and links that would point outside the archive's
//! root are refused with the entry named, and a truncated or corrupt archive writes no snapshot.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::saver::{BlobSaver, Checkpoints};
use crate::snapshot::{RootLayout, Snapshot, Summary, Warning};
use crate::tree::{Node, NodeKind, RawName, Timestamp, Tree, Xattr};

#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The path recorded in the snapshot (default: the archive's file name).
    pub as_path: Option<String>,
    pub hostname: Option<String>,
    pub tags: Vec<String>,
    /// Leading path components to drop from every entry (like tar --strip-components).
    pub strip_components: usize,
    /// Accept symlinks with absolute targets (relative ones climbing out are always refused).
    pub allow_absolute_symlinks: bool,
    /// Refuse an entry whose content is larger than this, by its declared size before any of
    /// it is read. The holes of a sparse entry are synthesised, so a few bytes of header can
    /// declare an exabyte of zeros, which would take years to chunk.
    pub max_file_bytes: Option<u64>,
    /// Refuse an archive whose entries add up to more than this (declared, then as read): a
    /// gzip of zeros expands a thousandfold, so without a cap a small file can claim any
    /// amount of work and of repository space.
    pub max_total_bytes: Option<u64>,
    /// Further top-level snapshot fields (e.g. `app`, so that an application's retention
    /// applies to imported archives of it).
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Intermediate index files during the import; their guard is also asked before the
    /// final index and snapshot are written, which are skipped when it fails (lock lost).
    pub checkpoints: Option<Checkpoints>,
}

pub struct Imported {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
}

#[derive(Default)]
struct Dir {
    node: Option<Node>,
    children: BTreeMap<RawName, Item>,
}

enum Item {
    Dir(Dir),
    Leaf(Node),
}

/// The date in a name like `backup-dss-data-2026-11-20.tar.gz`, as midnight UTC.
pub fn date_from_name(name: &str) -> Option<DateTime<Utc>> {
    let b = name.as_bytes();
    (0..b.len().saturating_sub(9)).find_map(|i| {
        let w = &b[i..i + 10];
        let shape = w.iter().enumerate().all(|(j, c)| {
            if j == 4 || j == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
        if !shape || (i > 0 && b[i - 1].is_ascii_digit()) {
            return None;
        }
        let d = NaiveDate::parse_from_str(name.get(i..i + 10)?, "%Y-%m-%d").ok()?;
        Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?))
    })
}

/// Opens `path` and undoes gzip or zstd compression, recognised by magic bytes.
fn open_archive(path: &Path) -> Result<Box<dyn Read>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let head = r.fill_buf().map_err(|e| Error::io(path, e))?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(|e| Error::io(path, e))?)
    } else {
        Box::new(r)
    })
}

/// Checks an entry name and turns it into components below the root.
fn safe_components(raw: &[u8], strip: usize) -> std::result::Result<Vec<RawName>, String> {
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(RawName::from(n)),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
            Component::ParentDir => return Err("'..' component".into()),
        }
    }
    Ok(out.into_iter().skip(strip).collect())
}

/// Whether a symlink at `at` (components) pointing to `target` stays inside the root.
fn link_stays_inside(at: &[RawName], target: &[u8], allow_absolute: bool) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let t = Path::new(std::ffi::OsStr::from_bytes(target));
    if t.is_absolute() {
        return allow_absolute;
    }
    let mut depth = at.len() as i64 - 1;
    for c in t.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

pub fn import_tar(repo: Arc<Repository>, archive: &Path, opts: &ImportOptions) -> Result<Imported> {
    import_stream(repo, open_archive(archive)?, archive, opts)
}

/// Imports an uncompressed tar stream; `archive` names it in errors and in the snapshot.
pub fn import_stream(
    repo: Arc<Repository>,
    stream: impl Read,
    archive: &Path,
    opts: &ImportOptions,
) -> Result<Imported> {
    let started = Utc::now();
    let clock = std::time::Instant::now();
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tar = tar::Archive::new(stream);
    let saver = BlobSaver::with_checkpoints(repo.clone(), 2, opts.checkpoints.clone());
    let result = read_entries(&repo, &saver, &mut tar, archive, opts);
    let bytes_added = saver
        .stats
        .bytes_added
        .load(std::sync::atomic::Ordering::Relaxed);
    let bytes_stored = saver
        .stats
        .bytes_stored
        .load(std::sync::atomic::Ordering::Relaxed);
    let blobs_added = saver
        .stats
        .blobs_added
        .load(std::sync::atomic::Ordering::Relaxed);
    let Parsed {
        root,
        mut summary,
        newest,
        warnings,
        link_counts,
    } = match result {
        Ok(r) => r,
        Err(e) => {
            // Index what was stored so that the next attempt reuses it, unless the lock
            // was lost (a prune may have deleted some of it meanwhile).
            if saver.ensure_committable().is_ok() {
                let _ = saver.finish();
            }
            return Err(e);
        }
    };
    let tree = save_dir(&saver, root.children, &link_counts)?;
    saver.ensure_committable()?;
    saver.finish()?;
    summary.bytes_added = bytes_added;
    summary.bytes_stored = bytes_stored;
    summary.blobs_added = blobs_added;
    summary.started = Some(started);
    summary.duration_secs = clock.elapsed().as_secs_f64();
    let time = date_from_name(&name).or(newest).unwrap_or(started);
    let mut extra = opts.extra.clone();
    extra.insert(
        "imported_from".to_string(),
        serde_json::Value::String(archive.display().to_string()),
    );
    let snapshot = Snapshot {
        time,
        tree,
        paths: vec![opts.as_path.clone().unwrap_or(name)],
        hostname: opts.hostname.clone().unwrap_or_else(crate::host::hostname),
        username: crate::host::username(),
        tags: opts.tags.clone(),
        parent: None,
        replaces: None,
        rewrites: Vec::new(),
        program_version: env!("CARGO_PKG_VERSION").to_string(),
        layout: RootLayout::DirContent,
        root: root.node,
        summary,
        warnings,
        consistency: None,
        attachments: Vec::new(),
        extra,
    };
    let id = repo.save_snapshot(&snapshot)?;
    repo.load_index()?;
    Ok(Imported { id, snapshot })
}

/// What reading an archive's entries produced.
struct Parsed {
    root: Dir,
    summary: Summary,
    newest: Option<DateTime<Utc>>,
    warnings: Vec<Warning>,
    /// Members per hardlink group (synthetic inode -> count), applied when trees are written.
    link_counts: HashMap<u64, u64>,
}

fn read_entries<R: Read>(
    repo: &Repository,
    saver: &BlobSaver,
    tar: &mut tar::Archive<R>,
    archive: &Path,
    opts: &ImportOptions,
) -> Result<Parsed> {
    let bad = |entry: &str, why: String| {
        Error::Invalid(format!(
            "{}: entry '{entry}': {why}; nothing imported",
            archive.display()
        ))
    };
    let io = |e: std::io::Error| {
        Error::Invalid(format!(
            "{}: not a readable tar archive ({e}); nothing imported",
            archive.display()
        ))
    };
    let mut root = Dir::default();
    let mut summary = Summary::default();
    let mut warnings = Vec::new();
    let mut newest: Option<DateTime<Utc>> = None;
    let mut link_counts: HashMap<u64, u64> = HashMap::new();
    let mut next_inode = 0u64;
    let chunker = repo.config().chunker;
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let h = entry.header().clone();
        let mut mtime = Timestamp(h.mtime().map_err(io)? as i64, 0);
        let mut atime = mtime;
        let mut xattrs = Vec::new();
        let mut sparse_pax: Vec<(String, String)> = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(io)? {
            for ext in pax {
                // The tar crate splits PAX records at newlines, so a value containing one
                // (GNU tar's SCHILY.acl.* text) ends the records it can read for this entry.
                let Ok(ext) = ext else {
                    warnings.push(Warning {
                        path: shown.clone(),
                        message: "some PAX records could not be read (a value contains a newline); ACLs or xattrs may be missing".into(),
                    });
                    break;
                };
                let key = ext.key().unwrap_or("");
                let ts = |v: &[u8]| -> Option<Timestamp> {
                    let s = std::str::from_utf8(v).ok()?;
                    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
                    let nanos: u32 = format!("{:0<9}", &frac[..frac.len().min(9)]).parse().ok()?;
                    Some(Timestamp(sec.parse().ok()?, nanos))
                };
                if let Some(k) = key.strip_prefix("GNU.sparse.") {
                    sparse_pax.push((
                        k.to_string(),
                        String::from_utf8_lossy(ext.value_bytes()).into_owned(),
                    ));
                } else if key == "size" {
                    // The tar crate falls back to the header's size when this does not parse,
                    // so an impossible size (GNU tar: "out of range") would pass unseen.
                    let v = String::from_utf8_lossy(ext.value_bytes()).into_owned();
                    if v.trim().parse::<u64>().is_err() {
                        return Err(bad(
                            &shown,
                            format!("PAX size '{v}' is not a size this archive can have"),
                        ));
                    }
                } else if key == "mtime" {
                    mtime = ts(ext.value_bytes()).unwrap_or(mtime);
                } else if key == "atime" {
                    atime = ts(ext.value_bytes()).unwrap_or(atime);
                } else if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push(Xattr {
                        name: RawName::from(x),
                        value: ext.value_bytes().to_vec(),
                    });
                }
            }
        }
        xattrs.sort_by(|a, b| a.name.cmp(&b.name));
        let sparse_get = |k: &str| {
            sparse_pax
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let pax_sparse = match (
            sparse_get("major").as_deref(),
            sparse_get("minor").as_deref(),
        ) {
            (None, None) if sparse_pax.is_empty() => None,
            (Some("1"), Some("0")) => Some(
                sparse_get("realsize")
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| {
                        bad(
                            &shown,
                            "PAX sparse entry without GNU.sparse.realsize".into(),
                        )
                    })?,
            ),
            _ => {
                return Err(bad(
                    &shown,
                    "unsupported GNU sparse format (only PAX 1.0 and old GNU are read)".into(),
                ))
            }
        };
        let name_bytes = match (&pax_sparse, sparse_get("name")) {
            (Some(_), Some(real)) => real.into_bytes(),
            _ => raw.clone(),
        };
        let shown = String::from_utf8_lossy(&name_bytes).into_owned();
        let comps =
            safe_components(&name_bytes, opts.strip_components).map_err(|w| bad(&shown, w))?;
        let when = Utc.timestamp_opt(mtime.0, mtime.1).single();
        if when > newest {
            newest = when;
        }
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                NodeKind::File
            }
            tar::EntryType::Directory => NodeKind::Dir,
            tar::EntryType::Symlink => NodeKind::Symlink,
            tar::EntryType::Link => NodeKind::File,
            tar::EntryType::Fifo => NodeKind::Fifo,
            tar::EntryType::Char => NodeKind::Chardev,
            tar::EntryType::Block => NodeKind::Blockdev,
            _ => continue, // PAX/GNU metadata entries the reader already applied
        };
        if comps.is_empty() {
            if kind == NodeKind::Dir {
                root.node = Some(node(RawName::from("."), kind, &h, mtime, atime, xattrs));
            }
            continue;
        }
        let mut n = node(
            comps.last().unwrap().clone(),
            kind,
            &h,
            mtime,
            atime,
            xattrs,
        );
        match h.entry_type() {
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let tcomps = safe_components(&target, opts.strip_components)
                    .map_err(|w| bad(&shown, format!("hard link target {w}")))?;
                let Some(Item::Leaf(first)) = lookup(&root, &tcomps) else {
                    return Err(bad(
                        &shown,
                        "hard link to an entry not (yet) in the archive".into(),
                    ));
                };
                // Members of a hardlink group share a synthetic inode; their link count is
                // set from `link_counts` once the whole archive has been read.
                let mut first = first.clone();
                if first.inode == 0 {
                    next_inode += 1;
                    first.inode = next_inode;
                    set_leaf(&mut root, &tcomps, first.clone());
                }
                *link_counts.entry(first.inode).or_insert(1) += 1;
                n = Node {
                    name: n.name,
                    ..first
                };
                summary.total_files += 1;
                summary.total_bytes += n.size;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if !link_stays_inside(&comps, &target, opts.allow_absolute_symlinks) {
                    let hint = if target.starts_with(b"/") {
                        " (--refuse-absolute-symlinks was given)"
                    } else {
                        ""
                    };
                    return Err(bad(
                        &shown,
                        format!(
                            "symlink to '{}' points outside the archive{hint}",
                            String::from_utf8_lossy(&target)
                        ),
                    ));
                }
                n.target = Some(RawName(target));
            }
            _ if kind == NodeKind::File => {
                n.sparse = h.entry_type() == tar::EntryType::GNUSparse || pax_sparse.is_some();
                // The tar crate reports an old GNU sparse entry's expanded size.
                let declared = pax_sparse.unwrap_or(entry.size());
                if let Some(max) = opts.max_file_bytes.filter(|&m| declared > m) {
                    return Err(bad(
                        &shown,
                        format!("declares {declared} bytes, more than the limit of {max} bytes"),
                    ));
                }
                let before = summary.total_bytes;
                let over_total = |n: u64| {
                    opts.max_total_bytes
                        .filter(|&m| before.saturating_add(n) > m)
                        .map(|m| {
                            bad(
                                &shown,
                                format!(
                                    "the archive's entries add up to more than the limit of {m} \
                                     bytes (--max-total-size)"
                                ),
                            )
                        })
                };
                if let Some(e) = over_total(declared) {
                    return Err(e);
                }
                let mut read = 0u64;
                let mut body: Box<dyn Read + '_> = match pax_sparse {
                    Some(real) => Box::new(
                        PaxSparse::new(&mut entry, real)
                            .map_err(|e| bad(&shown, format!("sparse map: {e}")))?,
                    ),
                    None => Box::new(&mut entry),
                };
                crate::chunker::for_each_chunk(&mut body, &chunker, io, |chunk| {
                    read += chunk.len() as u64;
                    if let Some(max) = opts.max_file_bytes.filter(|&m| read > m) {
                        return Err(bad(&shown, format!("larger than the limit of {max} bytes")));
                    }
                    if let Some(e) = over_total(read) {
                        return Err(e);
                    }
                    n.content.push(saver.save(BlobKind::Data, chunk)?);
                    Ok(())
                })?;
                n.size = read;
                summary.total_files += 1;
                summary.files_new += 1;
                summary.total_bytes += read;
                summary.bytes_read += read;
            }
            _ => {}
        }
        if kind == NodeKind::Dir {
            summary.dirs += 1;
            let d = ensure_dir(&mut root, &comps).map_err(|w| bad(&shown, w))?;
            d.node = Some(n);
        } else {
            let (parent, last) = comps.split_at(comps.len() - 1);
            let d = ensure_dir(&mut root, parent).map_err(|w| bad(&shown, w))?;
            if let Some(Item::Dir(_)) = d.children.get(&last[0]) {
                return Err(bad(
                    &shown,
                    "a directory of the same name is already in the archive".into(),
                ));
            }
            d.children.insert(last[0].clone(), Item::Leaf(n));
        }
    }
    Ok(Parsed {
        root,
        summary,
        newest,
        warnings,
        link_counts,
    })
}

fn node(
    name: RawName,
    kind: NodeKind,
    h: &tar::Header,
    mtime: Timestamp,
    atime: Timestamp,
    xattrs: Vec<Xattr>,
) -> Node {
    let (major, minor) = (
        h.device_major().ok().flatten().unwrap_or(0),
        h.device_minor().ok().flatten().unwrap_or(0),
    );
    Node {
        name,
        kind,
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        user: h
            .username()
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(String::from),
        group: h
            .groupname()
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(String::from),
        size: 0,
        mtime,
        atime,
        ctime: mtime,
        inode: 0,
        dev: 0,
        links: if kind == NodeKind::Dir { 0 } else { 1 },
        rdev: if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
            nix::sys::stat::makedev(major as u64, minor as u64)
        } else {
            0
        },
        target: None,
        content: Vec::new(),
        subtree: None,
        xattrs,
        sparse: false,
    }
}

fn ensure_dir<'a>(
    root: &'a mut Dir,
    comps: &[RawName],
) -> std::result::Result<&'a mut Dir, String> {
    let mut d = root;
    for c in comps {
        let item = d
            .children
            .entry(c.clone())
            .or_insert_with(|| Item::Dir(Dir::default()));
        d = match item {
            Item::Dir(sub) => sub,
            Item::Leaf(_) => {
                return Err(format!(
                    "'{}' is a file in the archive but used as a directory",
                    c.lossy()
                ))
            }
        };
    }
    Ok(d)
}

fn lookup<'a>(root: &'a Dir, comps: &[RawName]) -> Option<&'a Item> {
    let (last, parents) = comps.split_last()?;
    let mut d = root;
    for c in parents {
        match d.children.get(c)? {
            Item::Dir(sub) => d = sub,
            Item::Leaf(_) => return None,
        }
    }
    d.children.get(last)
}

fn set_leaf(root: &mut Dir, comps: &[RawName], n: Node) {
    if let Some((last, parents)) = comps.split_last() {
        if let Ok(d) = ensure_dir(root, parents) {
            d.children.insert(last.clone(), Item::Leaf(n));
        }
    }
}

/// Stores directories bottom-up; a directory without its own entry gets 0755 and no times.
fn save_dir(
    saver: &BlobSaver,
    children: BTreeMap<RawName, Item>,
    link_counts: &HashMap<u64, u64>,
) -> Result<BlobId> {
    let mut nodes = Vec::with_capacity(children.len());
    for (name, item) in children {
        match item {
            Item::Leaf(mut n) => {
                if let Some(c) = link_counts.get(&n.inode) {
                    n.links = *c;
                }
                nodes.push(n)
            }
            Item::Dir(d) => {
                let mut n = d.node.unwrap_or_else(|| Node {
                    name: name.clone(),
                    kind: NodeKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    user: None,
                    group: None,
                    size: 0,
                    mtime: Timestamp::default(),
                    atime: Timestamp::default(),
                    ctime: Timestamp::default(),
                    inode: 0,
                    dev: 0,
                    links: 0,
                    rdev: 0,
                    target: None,
                    content: Vec::new(),
                    subtree: None,
                    xattrs: Vec::new(),
                    sparse: false,
                });
                n.name = name;
                n.subtree = Some(save_dir(saver, d.children, link_counts)?);
                nodes.push(n);
            }
        }
    }
    let mut tree = Tree { nodes };
    tree.sort();
    saver.save(BlobKind::Tree, &tree.encode())
}

/// Reads a PAX 1.0 sparse member: a map (count, then offset/length pairs, each a decimal line,
/// padded to 512 bytes) followed by the data regions; yields the file with its holes as zeros.
struct PaxSparse<R> {
    inner: R,
    regions: Vec<(u64, u64)>,
    real: u64,
    pos: u64,
    idx: usize,
}

impl<R: Read> PaxSparse<R> {
    fn new(mut inner: R, real: u64) -> std::io::Result<Self> {
        let bad = |w: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, w.to_string());
        let mut consumed = 0u64;
        let mut line = || -> std::io::Result<u64> {
            let mut v = Vec::new();
            let mut b = [0u8; 1];
            loop {
                inner.read_exact(&mut b)?;
                consumed += 1;
                if b[0] == b'\n' {
                    break;
                }
                if v.len() > 20 {
                    return Err(bad("number too long"));
                }
                v.push(b[0]);
            }
            std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("not a number"))
        };
        let n = line()?;
        if n > 1_000_000 {
            return Err(bad("too many regions"));
        }
        let mut regions = Vec::with_capacity(n as usize);
        let mut end = 0u64;
        for _ in 0..n {
            let (off, len) = (line()?, line()?);
            if off < end || off.checked_add(len).map(|e| e > real).unwrap_or(true) {
                return Err(bad("regions out of order or beyond the file size"));
            }
            end = off + len;
            regions.push((off, len));
        }
        let pad = (512 - consumed % 512) % 512;
        std::io::copy(&mut (&mut inner).take(pad), &mut std::io::sink())?;
        Ok(PaxSparse {
            inner,
            regions,
            real,
            pos: 0,
            idx: 0,
        })
    }
}

impl<R: Read> Read for PaxSparse<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.real || out.is_empty() {
            return Ok(0);
        }
        while let Some(&(off, len)) = self.regions.get(self.idx) {
            if self.pos >= off + len {
                self.idx += 1;
                continue;
            }
            if self.pos < off {
                let n = out.len().min((off - self.pos) as usize);
                out[..n].fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            let n = out.len().min((off + len - self.pos) as usize);
            self.inner.read_exact(&mut out[..n])?;
            self.pos += n as u64;
            return Ok(n);
        }
        let n = out.len().min((self.real - self.pos) as usize);
        out[..n].fill(0);
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_links() {
        assert!(safe_components(b"/etc/passwd", 0).is_err());
        assert!(safe_components(b"a/../../x", 0).is_err());
        assert_eq!(
            safe_components(b"./srv/data/x", 2).unwrap(),
            vec![RawName::from("x")]
        );
        let at = safe_components(b"a/b/link", 0).unwrap();
        assert!(link_stays_inside(&at, b"../c", false));
        assert!(link_stays_inside(&at, b"../../c", false));
        assert!(!link_stays_inside(&at, b"../../../etc", true));
        assert!(!link_stays_inside(&at, b"/etc/passwd", false));
        assert!(link_stays_inside(&at, b"/etc/passwd", true));
        assert_eq!(
            date_from_name("backup-dss-data-2026-11-20.tar.gz")
                .unwrap()
                .to_rfc3339(),
            "2026-11-20T00:00:00+00:00"
        );
        assert!(date_from_name("backup.tar.gz").is_none());
    }
}
