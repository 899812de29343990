//! Export a snapshot (or a subtree) as a tar stream that GNU tar restores to the same tree.
//!
//! An archive is the lingua franca of restores done by hand, without holdfast installed. Every
//! entry carries a PAX header for what ustar cannot hold (long or non-UTF-8 names, nanosecond
//! times, owner names, xattrs and ACLs as `SCHILY.xattr.*`, which GNU tar reads with
//! `--xattrs`); hardlinks are link entries; sparse files use GNU sparse headers so holes stay
//! holes.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, GnuExtSparseHeader, Header};

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

const BLOCK: usize = 4096;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ExportReport {
    pub entries: u64,
    pub bytes: u64,
}

/// Writes every entry below `tree` (paths relative to it) to `out` as one tar stream.
pub fn export_tar<W: Write>(
    repo: &Repository,
    tree: &BlobId,
    root: Option<&Node>,
    out: W,
) -> Result<ExportReport> {
    let mut b = tar::Builder::new(out);
    let mut report = ExportReport::default();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let io = |e: std::io::Error| Error::io("tar stream", e);
    if let Some(root) = root {
        // The top directory itself, as `./`, so that its mode and times come back too.
        append(&mut b, Path::new("."), root, &mut links, repo, &mut report).map_err(io)?;
    }
    let mut err = None;
    crate::walk::walk(repo, tree, Path::new(""), &mut |p, n| {
        if err.is_none() {
            if let Err(e) = append(&mut b, p, n, &mut links, repo, &mut report) {
                err = Some(e);
            }
        }
        Ok(err.is_none())
    })?;
    if let Some(e) = err {
        return Err(io(e));
    }
    b.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(report)
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    n: &Node,
    links: &mut HashMap<(u64, u64), PathBuf>,
    repo: &Repository,
    report: &mut ExportReport,
) -> std::io::Result<()> {
    report.entries += 1;
    let mut pax: Vec<(String, Vec<u8>)> = vec![
        ("path".into(), path.as_os_str().as_bytes().to_vec()),
        (
            "mtime".into(),
            format!("{}.{:09}", n.mtime.0, n.mtime.1).into_bytes(),
        ),
        (
            "atime".into(),
            format!("{}.{:09}", n.atime.0, n.atime.1).into_bytes(),
        ),
    ];
    if let Some(u) = &n.user {
        pax.push(("uname".into(), u.clone().into_bytes()));
    }
    if let Some(g) = &n.group {
        pax.push(("gname".into(), g.clone().into_bytes()));
    }
    for x in &n.xattrs {
        // GNU tar carries ACLs as text in SCHILY.acl.*, not as their binary xattrs.
        let acl = match x.name.0.as_slice() {
            b"system.posix_acl_access" => Some("SCHILY.acl.access"),
            b"system.posix_acl_default" => Some("SCHILY.acl.default"),
            _ => None,
        };
        match acl.and_then(|k| acl_text(&x.value).map(|t| (k, t))) {
            Some((k, text)) => pax.push((k.into(), text.into_bytes())),
            None => pax.push((format!("SCHILY.xattr.{}", x.name.lossy()), x.value.clone())),
        }
    }
    let mut h = Header::new_gnu();
    h.set_mode(n.mode);
    h.set_uid(n.uid as u64);
    h.set_gid(n.gid as u64);
    h.set_mtime(n.mtime.0.max(0) as u64);
    h.set_size(0);
    // The PAX path is authoritative; the header name is a readable fallback.
    let short = truncate(path.as_os_str().as_bytes(), 99);
    h.as_old_mut().name[..short.len()].copy_from_slice(short);
    let hard_target = if n.kind == NodeKind::File && n.links > 1 && n.inode != 0 {
        links.get(&(n.dev, n.inode)).cloned()
    } else {
        None
    };
    match (n.kind, hard_target) {
        (NodeKind::File, Some(first)) => {
            h.set_entry_type(EntryType::Link);
            pax.push(("linkpath".into(), first.as_os_str().as_bytes().to_vec()));
            set_link_fallback(&mut h, first.as_os_str().as_bytes());
            write_pax(b, &pax)?;
            h.set_cksum();
            b.append(&h, std::io::empty())?;
        }
        (NodeKind::File, None) => {
            if n.links > 1 && n.inode != 0 {
                links.insert((n.dev, n.inode), path.to_path_buf());
            }
            report.bytes += n.size;
            if n.sparse {
                return append_sparse(b, h, pax, n, repo);
            }
            h.set_entry_type(EntryType::Regular);
            h.set_size(n.size);
            write_pax(b, &pax)?;
            h.set_cksum();
            let mut r = BlobReader {
                repo,
                blobs: &n.content,
                next: 0,
                buf: Vec::new(),
                pos: 0,
            };
            b.append(&h, &mut r)?;
        }
        (NodeKind::Dir, _) => {
            h.set_entry_type(EntryType::Directory);
            write_pax(b, &pax)?;
            h.set_cksum();
            b.append(&h, std::io::empty())?;
        }
        (NodeKind::Symlink, _) => {
            h.set_entry_type(EntryType::Symlink);
            let t = n.target.as_ref().map(|t| t.0.clone()).unwrap_or_default();
            set_link_fallback(&mut h, &t);
            pax.push(("linkpath".into(), t));
            write_pax(b, &pax)?;
            h.set_cksum();
            b.append(&h, std::io::empty())?;
        }
        (NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev, _) => {
            h.set_entry_type(match n.kind {
                NodeKind::Fifo => EntryType::Fifo,
                NodeKind::Chardev => EntryType::Char,
                _ => EntryType::Block,
            });
            if n.kind != NodeKind::Fifo {
                h.set_device_major(nix::sys::stat::major(n.rdev) as u32)?;
                h.set_device_minor(nix::sys::stat::minor(n.rdev) as u32)?;
            }
            write_pax(b, &pax)?;
            h.set_cksum();
            b.append(&h, std::io::empty())?;
        }
        (NodeKind::Socket, _) => report.entries -= 1,
    }
    Ok(())
}

fn truncate(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

fn set_link_fallback(h: &mut Header, target: &[u8]) {
    let t = truncate(target, 99);
    h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
}

fn write_pax<W: Write>(b: &mut tar::Builder<W>, pax: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

/// Streams a file's content blob by blob.
struct BlobReader<'a> {
    repo: &'a Repository,
    blobs: &'a [BlobId],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.blobs.get(self.next) else {
                return Ok(0);
            };
            self.buf = self.repo.read_blob(id).map_err(std::io::Error::other)?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A GNU sparse entry: the map of data regions in the header (and extension headers), then
/// only those regions' bytes.
fn append_sparse<W: Write>(
    b: &mut tar::Builder<W>,
    mut h: Header,
    pax: Vec<(String, Vec<u8>)>,
    n: &Node,
    repo: &Repository,
) -> std::io::Result<()> {
    // First pass: where the data is (runs of non-zero 4 KiB blocks).
    let mut regions: Vec<(u64, u64)> = Vec::new();
    let mut off = 0u64;
    for id in &n.content {
        let data = repo.read_blob(id).map_err(std::io::Error::other)?;
        for block in data.chunks(BLOCK) {
            if block.iter().any(|&x| x != 0) {
                match regions.last_mut() {
                    Some((s, l)) if *s + *l == off => *l += block.len() as u64,
                    _ => regions.push((off, block.len() as u64)),
                }
            }
            off += block.len() as u64;
        }
    }
    // GNU tar wants a final (possibly empty) region at the real size.
    if regions.last().map(|(s, l)| s + l) != Some(n.size) {
        regions.push((n.size, 0));
    }
    let on_disk: u64 = regions.iter().map(|(_, l)| l).sum();
    write_pax(b, &pax)?;
    h.set_entry_type(EntryType::GNUSparse);
    h.set_size(on_disk);
    {
        let g = h.as_gnu_mut().expect("gnu header");
        g.set_real_size(n.size);
        for (slot, (s, l)) in g.sparse.iter_mut().zip(&regions) {
            slot.set_offset(*s);
            slot.set_length(*l);
        }
        g.set_is_extended(regions.len() > 4);
    }
    h.set_cksum();
    let w = b.get_mut();
    w.write_all(h.as_bytes())?;
    let mut rest = regions.iter().skip(4).peekable();
    while rest.peek().is_some() {
        let mut ext = GnuExtSparseHeader::new();
        for slot in ext.sparse.iter_mut() {
            match rest.next() {
                Some((s, l)) => {
                    slot.set_offset(*s);
                    slot.set_length(*l);
                }
                None => break,
            }
        }
        ext.set_is_extended(rest.peek().is_some());
        w.write_all(ext.as_bytes())?;
    }
    // Second pass: the data regions' bytes, in order.
    let mut off = 0u64;
    let mut written = 0u64;
    let mut region = regions.iter().peekable();
    for id in &n.content {
        let data = repo.read_blob(id).map_err(std::io::Error::other)?;
        let (start, end) = (off, off + data.len() as u64);
        while let Some(&&(s, l)) = region.peek() {
            if l == 0 || s >= end {
                break;
            }
            let from = s.max(start);
            let to = (s + l).min(end);
            w.write_all(&data[(from - start) as usize..(to - start) as usize])?;
            written += to - from;
            if s + l <= end {
                region.next();
            } else {
                break;
            }
        }
        off = end;
    }
    let pad = (512 - (written % 512) as usize) % 512;
    w.write_all(&vec![0u8; pad])?;
    Ok(())
}

/// The text form (`user::rw-,user:1000:r--,group::r--,mask::r--,other::---`) of a Linux
/// `system.posix_acl_*` value: a version word (2), then (tag u16, perm u16, id u32) entries.
fn acl_text(v: &[u8]) -> Option<String> {
    if v.len() < 4
        || !(v.len() - 4).is_multiple_of(8)
        || u32::from_le_bytes(v[..4].try_into().ok()?) != 2
    {
        return None;
    }
    let mut parts = Vec::new();
    for e in v[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let p = format!(
            "{}{}{}",
            if perm & 4 != 0 { 'r' } else { '-' },
            if perm & 2 != 0 { 'w' } else { '-' },
            if perm & 1 != 0 { 'x' } else { '-' }
        );
        parts.push(match tag {
            0x01 => format!("user::{p}"),
            0x02 => format!("user:{id}:{p}"),
            0x04 => format!("group::{p}"),
            0x08 => format!("group:{id}:{p}"),
            0x10 => format!("mask::{p}"),
            0x20 => format!("other::{p}"),
            _ => return None,
        });
    }
    Some(parts.join(","))
}

#[cfg(test)]
mod tests {
    #[test]
    fn acl_binary_to_text() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 777),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        assert_eq!(
            super::acl_text(&v).unwrap(),
            "user::rw-,user:777:r--,group::r--,mask::r--,other::---"
        );
        assert!(super::acl_text(&v[..7]).is_none());
    }
}
