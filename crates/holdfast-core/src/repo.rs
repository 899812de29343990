//! An opened repository: storage, the master key, the config, the index and the cache.
//!
//! This is the one place that knows how objects are named, sealed and cached; commands work in
//! terms of blobs, trees and snapshots.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::{content_hash, BlobId, IndexId, KeyId, PackId, SnapshotId};
use crate::index::table::{self, Table, TableError};
use crate::index::{BlobLocation, IndexFile, MasterIndex, PackEntry};
use crate::keyfile::{KdfParams, KeyFile};
use crate::pack::BlobKind;
use crate::snapshot::{Snapshot, SnapshotFilter};
use crate::storage::{layout, Storage};
use crate::tree::Tree;

/// Snapshots with their ids.
pub type SnapshotList = Vec<(SnapshotId, Snapshot)>;

/// The repository format this code writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Most blobs one index file lists (about 4.5 MiB stored): see [`Repository::save_index_files`].
pub const INDEX_FILE_MAX_BLOBS: usize = 100_000;

/// Content-defined chunking sizes; see docs/chunking.md for why these.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams::with_average(512 * 1024)
    }
}

impl ChunkerParams {
    /// A quarter of the average as minimum, four times it as maximum (FastCDC's own ratios).
    pub fn with_average(avg_size: u32) -> Self {
        ChunkerParams {
            min_size: avg_size / 4,
            avg_size,
            max_size: avg_size.saturating_mul(4),
        }
    }
}

/// `config`: stored in the clear (it holds no secret) so that the format version can be
/// checked before any key is tried.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub holdfast_repository: u32,
    pub id: String,
    pub created: DateTime<Utc>,
    pub chunker: ChunkerParams,
    /// Target size of pack files in bytes.
    pub pack_size: u64,
    pub compression_level: i32,
}

/// Choices made once, at `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub chunker: ChunkerParams,
    pub pack_size: u64,
    pub compression_level: i32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams::default(),
            chunker: ChunkerParams::default(),
            pack_size: 16 * 1024 * 1024,
            compression_level: 3,
        }
    }
}

pub struct Repository {
    storage: Storage,
    key: MasterKey,
    key_id: KeyId,
    config: Config,
    cache: Option<Cache>,
    index: RwLock<Arc<MasterIndex>>,
    index_ids: RwLock<Vec<IndexId>>,
    tree_packs: TreePacks,
}

/// Tree packs held in memory once read and verified: walking a snapshot loads thousands of
/// trees from a handful of packs, and each must not cost a read of its whole pack.
#[derive(Default)]
struct TreePacks {
    packs: std::sync::Mutex<std::collections::HashMap<PackId, Arc<Vec<u8>>>>,
    bytes: std::sync::atomic::AtomicUsize,
}

/// Tree packs kept in memory at most (they are small: trees are a few hundred bytes a directory).
const TREE_PACK_MEMORY: usize = 256 * 1024 * 1024;

impl Repository {
    pub fn init(storage: Storage, password: &[u8], opts: &InitOptions) -> Result<Repository> {
        if storage.exists(layout::CONFIG)? {
            return Err(Error::AlreadyExists(storage.location().to_string()));
        }
        if !storage.list(layout::KEYS)?.is_empty() {
            return Err(Error::Invalid(format!(
                "{} has key files but no config: an earlier init was interrupted; remove its keys/ folder and run init again",
                storage.location()
            )));
        }
        let config = Config {
            holdfast_repository: FORMAT_VERSION,
            id: hex::encode(content_hash(&rand::random::<[u8; 32]>())),
            created: Utc::now(),
            chunker: opts.chunker,
            pack_size: opts.pack_size,
            compression_level: opts.compression_level,
        };
        validate_config(storage.location(), &config)?;
        let key = MasterKey::generate();
        let kf = KeyFile::wrap(&key, password, opts.kdf)?;
        let key_id = KeyId::random();
        // Key first: a config without a key would be an unopenable repository.
        storage.write(&key_path(&key_id), serde_json::to_vec_pretty(&kf).unwrap())?;
        storage.write(layout::CONFIG, serde_json::to_vec_pretty(&config).unwrap())?;
        Ok(Self::assemble(storage, key, key_id, config, true))
    }

    /// Opens a repository, trying the password against every key file.
    pub fn open(storage: Storage, password: &[u8], use_cache: bool) -> Result<Repository> {
        let config = read_config(&storage)?;
        // Every key file is tried; an odd one (not JSON, unknown KDF, absurd cost, a name that
        // is not an id) is skipped rather than stopping the others from being tried.
        let mut tried = 0;
        let mut skipped = Vec::new();
        let mut keys = storage.list(layout::KEYS)?;
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        for k in keys {
            let Ok(key_id) = k.name.parse::<KeyId>() else {
                skipped.push(format!("{}: not a key id", k.path));
                continue;
            };
            let kf: KeyFile = match storage.read(&k.path).map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(kf)) => kf,
                Ok(Err(e)) => {
                    skipped.push(format!("{}: {e}", k.path));
                    continue;
                }
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            match kf.unwrap_key(password) {
                Ok(Some(key)) => {
                    return Ok(Self::assemble(storage, key, key_id, config, use_cache))
                }
                Ok(None) => tried += 1,
                Err(e) => skipped.push(format!("{}: {e}", k.path)),
            }
        }
        for s in &skipped {
            tracing::warn!("key file skipped: {s}");
        }
        if tried == 0 && !skipped.is_empty() {
            return Err(Error::corrupt(
                format!("keys of {}", storage.location()),
                format!("no usable key file ({})", skipped.join("; ")),
            ));
        }
        Err(Error::WrongPassword(storage.location().to_string()))
    }

    fn assemble(
        storage: Storage,
        key: MasterKey,
        key_id: KeyId,
        config: Config,
        use_cache: bool,
    ) -> Self {
        let cache = if use_cache {
            Cache::open(&config.id)
        } else {
            None
        };
        Repository {
            storage,
            key,
            key_id,
            config,
            cache,
            index: RwLock::new(Arc::new(MasterIndex::default())),
            index_ids: RwLock::new(Vec::new()),
            tree_packs: TreePacks::default(),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }
    pub fn key(&self) -> &MasterKey {
        &self.key
    }
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- keys -----

    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        let kf = KeyFile::wrap(&self.key, password, kdf)?;
        let id = KeyId::random();
        self.storage
            .write(&key_path(&id), serde_json::to_vec_pretty(&kf).unwrap())?;
        Ok(id)
    }

    pub fn list_keys(&self) -> Result<Vec<(KeyId, KeyFile)>> {
        let mut out = Vec::new();
        for k in self.storage.list(layout::KEYS)? {
            let id: KeyId = match k.name.parse() {
                Ok(id) => id,
                Err(_) => continue,
            };
            let kf: KeyFile = serde_json::from_slice(&self.storage.read(&k.path)?)
                .map_err(|e| Error::corrupt(k.path.clone(), e.to_string()))?;
            out.push((id, kf));
        }
        out.sort_by_key(|(_, kf)| kf.created);
        Ok(out)
    }

    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        if *id == self.key_id {
            return Err(Error::Invalid(
                "refusing to remove the key this session was opened with".into(),
            ));
        }
        self.storage.delete(&key_path(id))
    }

    // ----- objects through the cache -----

    /// [`Self::read_cached`] for many objects, fetching those not cached concurrently.
    fn read_many_cached(&self, paths: &[String]) -> Vec<Result<Vec<u8>>> {
        let mut out: Vec<Option<Result<Vec<u8>>>> = paths
            .iter()
            .map(|p| self.cache.as_ref().and_then(|c| c.get(p)).map(Ok))
            .collect();
        let missing: Vec<usize> = (0..paths.len()).filter(|&i| out[i].is_none()).collect();
        let wanted: Vec<String> = missing.iter().map(|&i| paths[i].clone()).collect();
        for (i, r) in missing.into_iter().zip(self.storage.read_many(&wanted)) {
            let r = r.and_then(|b| crate::id::verify_addressed(&paths[i], b));
            if let (Ok(b), Some(c)) = (&r, &self.cache) {
                c.put(&paths[i], b);
            }
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.expect("every path read"))
            .collect()
    }

    /// Reads a content-addressed object, from the cache when it has it. Either way the bytes
    /// are checked against the name: a copy under the wrong name (an older snapshot copied
    /// over a newer one) is damage, never data.
    fn read_cached(&self, path: &str) -> Result<Vec<u8>> {
        if let Some(c) = &self.cache {
            if let Some(b) = c.get(path) {
                return Ok(b);
            }
        }
        let b = crate::id::verify_addressed(path, self.storage.read(path)?)?;
        if let Some(c) = &self.cache {
            c.put(path, &b);
        }
        Ok(b)
    }

    /// Writes a content-addressed object and returns its hash.
    fn write_addressed(&self, dir: &str, sealed: Vec<u8>, cache: bool) -> Result<[u8; 32]> {
        let hash = content_hash(&sealed);
        let path = format!("{dir}{}", hex::encode(hash));
        if cache {
            if let Some(c) = &self.cache {
                c.put(&path, &sealed);
            }
        }
        self.storage.write(&path, sealed)?;
        Ok(hash)
    }

    // ----- index -----

    /// Loads every index file into memory (from the cache where possible).
    /// Fails on any index file that cannot be read: what it lists is then unknown, and a
    /// backup could store again, or a prune delete, data that only it indexes.
    pub fn load_index(&self) -> Result<()> {
        match self.load_index_lenient()?.into_iter().next() {
            Some(Error::Corrupt { what, why }) => Err(Error::corrupt(
                what,
                format!(
                    "{why} (holdfast repair index rebuilds the index from the packs' own \
                     headers; do not prune before)"
                ),
            )),
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Loads every readable index file; returns the errors of those that are not (for check,
    /// which must be able to report a damaged index rather than stop at it).
    ///
    /// With a cache, the merged index is kept there as a table (see `index::table`) and
    /// mapped on the next start: only index files written since it was built are read, into
    /// a small second table, until they are an eighth of the first and the table is rebuilt.
    /// A table that lists an index file no longer stored (prune replaced it), or that a new
    /// index file supersedes, is rebuilt from all of them.
    pub fn load_index_lenient(&self) -> Result<Vec<Error>> {
        let listed: Vec<(IndexId, String)> = self
            .storage
            .list(layout::INDEX)?
            .into_iter()
            .filter_map(|l| l.name.parse::<IndexId>().ok().map(|id| (id, l.path)))
            .collect();
        let stored: HashSet<IndexId> = listed.iter().map(|(id, _)| *id).collect();
        let mac_key = self.key.table_mac_key();
        let table_path = self.cache.as_ref().map(|c| c.own_file(INDEX_TABLE));
        let cached = table_path
            .as_deref()
            .and_then(|path| match Table::open(path, &mac_key) {
                Ok(t) if t.sources().iter().all(|id| stored.contains(id)) => Some(t),
                Ok(_) => None,
                Err(TableError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    tracing::info!("index table {}: {e}; rebuilding it", path.display());
                    None
                }
            });
        let mut loaded = None;
        if let Some(base) = cached {
            let seen: HashSet<IndexId> = base.seen().into_iter().collect();
            let new: Vec<(IndexId, String)> = listed
                .iter()
                .filter(|(id, _)| !seen.contains(id))
                .cloned()
                .collect();
            let (files, errors) = self.read_index_files(new)?;
            let read: HashSet<IndexId> = files.iter().map(|(id, _)| *id).collect();
            let readable: Vec<IndexId> = listed
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| seen.contains(id) || read.contains(id))
                .collect();
            let added: usize = files
                .iter()
                .flat_map(|(_, f)| f.packs.iter().map(|p| p.blobs.len()))
                .sum();
            let supersedes = files.iter().any(|(_, f)| !f.supersedes.is_empty());
            if !supersedes && added * 8 <= base.entry_count() {
                let tables = if files.is_empty() {
                    vec![base]
                } else {
                    let held: HashSet<PackId> =
                        (0..base.pack_count()).map(|s| base.pack_id(s)).collect();
                    let source = table::Source {
                        seen: Vec::new(),
                        sources: files.iter().map(|(id, _)| *id).collect(),
                        packs: files.into_iter().flat_map(|(_, f)| f.packs).collect(),
                    };
                    let later = Table::build(source, &|p| held.contains(p), None, &mac_key)
                        .map_err(table_error)?;
                    vec![base, later]
                };
                loaded = Some((MasterIndex::from_tables(tables), errors, readable));
            }
        }
        // The files read whole: repair takes every other listed one for damaged.
        let (master, errors, ids) = match loaded {
            Some(l) => l,
            None => self.build_index(&listed, table_path.as_deref(), &mac_key)?,
        };
        if let Some(c) = &self.cache {
            c.retain(layout::INDEX, &ids.iter().map(|i| i.to_hex()).collect());
            if errors.is_empty() {
                c.retain(
                    layout::DATA,
                    &master.packs().map(|(p, _)| p.to_hex()).collect(),
                );
            }
        }
        *self.index.write().unwrap() = Arc::new(master);
        *self.index_ids.write().unwrap() = ids;
        Ok(errors)
    }

    /// Reads and merges every listed index file; the table is saved at `to` when all of them
    /// could be read (a table missing a damaged file's packs would hide the damage next time).
    fn build_index(
        &self,
        listed: &[(IndexId, String)],
        to: Option<&std::path::Path>,
        mac_key: &[u8; 32],
    ) -> Result<(MasterIndex, DamagedIndexFiles, Vec<IndexId>)> {
        let source = |files: Vec<(IndexId, IndexFile)>| {
            let superseded: HashSet<IndexId> = files
                .iter()
                .flat_map(|(_, f)| f.supersedes.iter().copied())
                .collect();
            let seen = files.iter().map(|(id, _)| *id).collect();
            let live: Vec<(IndexId, IndexFile)> = files
                .into_iter()
                .filter(|(id, _)| !superseded.contains(id))
                .collect();
            table::Source {
                seen,
                sources: live.iter().map(|(id, _)| *id).collect(),
                packs: live.into_iter().flat_map(|(_, f)| f.packs).collect(),
            }
        };
        let started = std::time::Instant::now();
        let (files, errors) = self.read_index_files(listed.to_vec())?;
        let read_secs = started.elapsed().as_secs_f64();
        let readable = files.iter().map(|(id, _)| *id).collect();
        let to = to.filter(|_| errors.is_empty());
        if let Some(path) = to {
            remove_stale_tables(path);
        }
        let table = match Table::build(source(files), &|_| false, to, mac_key) {
            Ok(t) => t,
            Err(e) if to.is_some() => {
                // The cache could not take it (full, read-only): the index still loads.
                tracing::warn!("could not save the index table in the cache: {e}");
                let (files, _) = self.read_index_files(listed.to_vec())?;
                Table::build(source(files), &|_| false, None, mac_key).map_err(table_error)?
            }
            Err(e) => return Err(table_error(e)),
        };
        tracing::debug!(
            "index: {} files read in {read_secs:.2}s, table of {} blobs built in {:.2}s",
            listed.len(),
            table.blob_count(),
            started.elapsed().as_secs_f64() - read_secs
        );
        Ok((MasterIndex::from_tables(vec![table]), errors, readable))
    }

    /// Reads and decodes index files concurrently; damaged ones become errors, in the order
    /// listed.
    fn read_index_files(
        &self,
        listed: Vec<(IndexId, String)>,
    ) -> Result<(Vec<(IndexId, IndexFile)>, DamagedIndexFiles)> {
        let paths: Vec<String> = listed.iter().map(|(_, p)| p.clone()).collect();
        let results: Vec<Result<(IndexId, IndexFile)>> = listed
            .into_par_iter()
            .zip(self.read_many_cached(&paths))
            .map(|((id, path), sealed)| Ok((id, IndexFile::open(&path, &self.key, &sealed?)?)))
            .collect();
        let mut errors = Vec::new();
        let mut files = Vec::new();
        for r in results {
            match r {
                Ok(f) => files.push(f),
                Err(e @ Error::Corrupt { .. }) => errors.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok((files, errors))
    }

    pub fn index(&self) -> Arc<MasterIndex> {
        self.index.read().unwrap().clone()
    }

    /// The index files the last load could read (a damaged one is left out).
    pub fn index_ids(&self) -> Vec<IndexId> {
        self.index_ids.read().unwrap().clone()
    }

    /// Writes `packs` as index files of at most [`INDEX_FILE_MAX_BLOBS`] blobs each, the last
    /// one naming `supersedes`. Until that last file exists, readers still see every file it
    /// replaces (plus some duplicates, which are harmless), so a crash part-way loses nothing.
    /// Bounded files keep every object of a 100 TB repository small enough to read, decrypt
    /// and parse in parallel, and none of them needs gigabytes of memory to write.
    pub fn save_index_files(
        &self,
        packs: Vec<PackEntry>,
        supersedes: Vec<IndexId>,
    ) -> Result<Vec<IndexId>> {
        let mut files = vec![IndexFile::default()];
        let mut blobs = 0;
        for p in packs {
            if blobs > 0 && blobs + p.blobs.len() > INDEX_FILE_MAX_BLOBS {
                files.push(IndexFile::default());
                blobs = 0;
            }
            blobs += p.blobs.len();
            files.last_mut().unwrap().packs.push(p);
        }
        if files.len() == 1 && files[0].packs.is_empty() && supersedes.is_empty() {
            return Ok(Vec::new());
        }
        files.last_mut().unwrap().supersedes = supersedes;
        files.iter().map(|f| self.save_index(f)).collect()
    }

    pub fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        let sealed = file.seal(&self.key);
        Ok(IndexId(self.write_addressed(
            layout::INDEX,
            sealed,
            true,
        )?))
    }

    // ----- packs and blobs -----

    /// Stores a pack; gives its buffer back for reuse when the storage did not keep it.
    pub fn save_pack(
        &self,
        id: &PackId,
        bytes: Vec<u8>,
        has_trees: bool,
    ) -> Result<Option<Vec<u8>>> {
        let path = layout::pack_path(&id.to_hex());
        if has_trees {
            if let Some(c) = &self.cache {
                c.put(&path, &bytes);
            }
        }
        self.storage.write_reusing(&path, bytes)
    }

    /// Seals a blob's plaintext for a pack.
    pub fn seal_blob(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.seal_blob_into(plain, &mut out);
        out
    }

    /// Seals a blob's plaintext into `out` (emptied first), reusing its allocation.
    pub fn seal_blob_into(&self, plain: &[u8], out: &mut Vec<u8>) {
        let level = self.config.compression_level;
        self.key
            .seal_into(out, |o| crate::compress::append_payload(plain, level, o));
    }

    /// Decrypts, decompresses and verifies one sealed blob.
    pub fn open_blob(&self, id: &BlobId, loc: &BlobLocation, sealed: &mut [u8]) -> Result<Vec<u8>> {
        let what = || format!("blob {} in pack {}", id.short(), loc.pack.short());
        let payload = self.key.open_in_place(&what(), sealed)?;
        let plain = crate::compress::unpack_payload(&what(), payload, loc.raw_length as usize)?;
        if plain.len() != loc.raw_length as usize || self.key.blob_id(&plain) != *id {
            return Err(Error::corrupt(what(), "content does not match its id"));
        }
        Ok(plain)
    }

    /// Where a blob is stored. A blob that a tree names but no index lists is missing data
    /// (an integrity error), not an ordinary "not found".
    pub fn locate(&self, id: &BlobId) -> Result<BlobLocation> {
        self.index().get(id).ok_or_else(|| {
            Error::corrupt(
                format!("blob {id}"),
                "missing: no index file lists it (holdfast check names what it affects)",
            )
        })
    }

    /// `len` bytes at `offset` of a pack; a pack that the index lists but storage lacks is
    /// missing data (an integrity error).
    pub fn read_pack_range(&self, pack: &PackId, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = layout::pack_path(&pack.to_hex());
        self.storage
            .read_range(&path, offset, len)
            .map_err(|e| missing_pack(e, &path))
    }

    /// Reads one blob's plaintext. Tree packs come through the cache whole.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        let path = layout::pack_path(&loc.pack.to_hex());
        let whole = if loc.kind == BlobKind::Tree && self.cache.is_some() {
            // A damaged byte elsewhere in the pack fails the whole pack's hash: then this
            // blob is read on its own, as without a cache, and stands or falls by itself.
            match self.tree_pack(&loc.pack, &path) {
                Ok(p) => Some(p),
                Err(Error::Corrupt { .. }) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let mut sealed = if let Some(pack) = whole {
            let (s, e) = (
                loc.offset as usize,
                loc.offset as usize + loc.length as usize,
            );
            if e > pack.len() {
                return Err(Error::corrupt(path, "blob beyond end of pack"));
            }
            pack[s..e].to_vec()
        } else {
            self.read_pack_range(&loc.pack, loc.offset as u64, loc.length as u64)?
        };
        self.open_blob(id, &loc, &mut sealed)
    }

    /// A whole tree pack, from memory, else the disk cache, else storage.
    fn tree_pack(&self, id: &PackId, path: &str) -> Result<Arc<Vec<u8>>> {
        use std::sync::atomic::Ordering;
        if let Some(p) = self.tree_packs.packs.lock().unwrap().get(id) {
            return Ok(p.clone());
        }
        let bytes = Arc::new(self.read_cached(path).map_err(|e| missing_pack(e, path))?);
        if self
            .tree_packs
            .bytes
            .fetch_add(bytes.len(), Ordering::Relaxed)
            + bytes.len()
            <= TREE_PACK_MEMORY
        {
            self.tree_packs
                .packs
                .lock()
                .unwrap()
                .insert(*id, bytes.clone());
        } else {
            self.tree_packs
                .bytes
                .fetch_sub(bytes.len(), Ordering::Relaxed);
        }
        Ok(bytes)
    }

    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        Tree::decode(id, &self.read_blob(id)?)
    }

    // ----- drills -----

    /// Stores the record of a restore drill; returns its id.
    pub fn save_drill(&self, record: &crate::drills::DrillRecord) -> Result<[u8; 32]> {
        let sealed = self.key.seal(&record.encode());
        self.write_addressed(layout::DRILLS, sealed, false)
    }

    /// Every readable drill record with the name it is stored under; one that cannot be
    /// read is left out with a warning (a drill record never decides what is kept).
    pub fn drills(&self) -> Result<Vec<(String, crate::drills::DrillRecord)>> {
        let listed = self.storage.list(layout::DRILLS)?;
        let paths: Vec<String> = listed.into_iter().map(|l| l.path).collect();
        Ok(self.read_records(&paths, "drill", crate::drills::DrillRecord::decode))
    }

    /// Reads and decodes the sealed records at `paths`, each with its path; one gone
    /// meanwhile is left out, one that cannot be read with a warning naming it (records are
    /// history: they decide nothing about what is kept).
    fn read_records<T>(
        &self,
        paths: &[String],
        what: &str,
        decode: fn(&str, &[u8]) -> Result<T>,
    ) -> Vec<(String, T)> {
        let mut out = Vec::new();
        for (path, sealed) in paths.iter().zip(self.storage.read_many(paths)) {
            match sealed.and_then(|s| decode(path, &self.key.open(path, &s)?)) {
                Ok(r) => out.push((path.clone(), r)),
                Err(Error::NotFound(_)) => {}
                Err(e) => tracing::warn!("{what} record {path} skipped: {e}"),
            }
        }
        out
    }

    /// Deletes the drill records of snapshots that are no longer stored; returns how many.
    pub fn remove_orphan_drills(&self) -> Result<usize> {
        let drills = self.drills()?;
        if drills.is_empty() {
            return Ok(0);
        }
        let (snaps, problems) = self.read_all_snapshots()?;
        let stored: HashSet<SnapshotId> = snaps
            .iter()
            .map(|(id, _)| *id)
            .chain(problems.iter().map(|p| p.id))
            .collect();
        let mut removed = 0;
        for (path, r) in drills {
            if !stored.contains(&r.snapshot) {
                self.storage.delete(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    // ----- runs -----

    /// Stores the record of a run (its `end` must be set), then drops the records that
    /// ended more than [`crate::runs::KEEP_DAYS`] ago, by name alone. Returns the object
    /// name.
    pub fn save_run(&self, record: &crate::runs::RunRecord) -> Result<String> {
        let end = record.end.unwrap_or_else(chrono::Utc::now);
        let sealed = self.key.seal(&record.encode());
        let name = crate::runs::object_name(end, &content_hash(&sealed));
        self.storage
            .write(&format!("{}{name}", layout::RUNS), sealed)?;
        let cutoff = chrono::Utc::now() - chrono::Duration::days(crate::runs::KEEP_DAYS);
        for old in self.run_names()? {
            if crate::runs::time_of_name(&old).is_some_and(|t| t < cutoff) {
                // Old history only: a failure here is not the run's.
                if let Err(e) = self.storage.delete(&format!("{}{old}", layout::RUNS)) {
                    tracing::warn!("old run record {old} not removed: {e}");
                }
            }
        }
        Ok(name)
    }

    /// The object names of the stored run records, oldest first.
    pub fn run_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .storage
            .list(layout::RUNS)?
            .into_iter()
            .filter_map(|l| l.path.strip_prefix(layout::RUNS).map(String::from))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads the run records `names` (from [`Repository::run_names`]); one that cannot be
    /// read is left out with a warning (a run record is history, it decides nothing).
    pub fn read_runs(&self, names: &[String]) -> Vec<(String, crate::runs::RunRecord)> {
        let paths: Vec<String> = names
            .iter()
            .map(|n| format!("{}{n}", layout::RUNS))
            .collect();
        self.read_records(&paths, "run", crate::runs::RunRecord::decode)
            .into_iter()
            .map(|(path, r)| (path[layout::RUNS.len()..].to_string(), r))
            .collect()
    }

    // ----- snapshots -----

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let sealed = self.key.seal(&snap.encode());
        Ok(SnapshotId(self.write_addressed(
            layout::SNAPSHOTS,
            sealed,
            true,
        )?))
    }

    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let path = format!("{}{}", layout::SNAPSHOTS, id.to_hex());
        let sealed = self.read_cached(&path)?;
        Snapshot::decode(&id.short(), &self.key.open(&path, &sealed)?)
    }

    /// All snapshots, oldest first. One that cannot be read or decrypted is left out with a
    /// warning (check reports it), so that a single damaged snapshot does not stop backups
    /// or listings. Commands that delete data or choose `latest` use
    /// [`Self::list_snapshots_strict`] or [`Self::find_snapshot`] instead.
    pub fn list_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let (snaps, problems) = self.list_snapshots_lenient()?;
        for p in problems {
            tracing::warn!("{p}");
        }
        Ok(snaps)
    }

    /// Every snapshot, or an error naming the first that cannot be read: what a command that
    /// deletes data needs, since the data an unreadable snapshot uses is unknown.
    pub fn list_snapshots_strict(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let (snaps, problems) = self.list_snapshots_lenient()?;
        if let Some(p) = problems.into_iter().next() {
            return Err(p.refusal("nothing was deleted, since the data it uses is unknown"));
        }
        Ok(snaps)
    }

    /// All readable snapshots, oldest first, and each unreadable one with why.
    pub fn list_snapshots_lenient(&self) -> Result<(SnapshotList, Vec<UnreadableSnapshot>)> {
        let (mut snaps, problems) = self.read_all_snapshots()?;
        // A snapshot replaced by another (tag) that a crash left behind is the same backup:
        // show it once, as the newer one.
        let replaced: HashSet<SnapshotId> = snaps.iter().filter_map(|(_, s)| s.replaces).collect();
        snaps.retain(|(id, _)| !replaced.contains(id));
        Ok((snaps, problems))
    }

    /// Snapshot files that a later snapshot replaces (see [`Snapshot::replaces`]) and that are
    /// still stored, after a crash between the two steps of a `tag`.
    pub fn replaced_snapshots(&self) -> Result<Vec<SnapshotId>> {
        let (snaps, _) = self.read_all_snapshots()?;
        let stored: HashSet<SnapshotId> = snaps.iter().map(|(id, _)| *id).collect();
        let mut ids: Vec<SnapshotId> = snaps
            .iter()
            .filter_map(|(_, s)| s.replaces)
            .filter(|id| stored.contains(id))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Every stored snapshot file, replaced ones included, oldest first.
    fn read_all_snapshots(&self) -> Result<(SnapshotList, Vec<UnreadableSnapshot>)> {
        let listed = self.storage.list(layout::SNAPSHOTS)?;
        let ids: Vec<SnapshotId> = listed
            .iter()
            .filter_map(|l| l.name.parse::<SnapshotId>().ok())
            .collect();
        let paths: Vec<String> = ids
            .iter()
            .map(|id| format!("{}{}", layout::SNAPSHOTS, id.to_hex()))
            .collect();
        let results: Vec<(SnapshotId, Result<Snapshot>)> = ids
            .into_par_iter()
            .zip(paths.par_iter())
            .zip(self.read_many_cached(&paths))
            .map(|((id, path), sealed)| {
                let snap =
                    sealed.and_then(|s| Snapshot::decode(&id.short(), &self.key.open(path, &s)?));
                (id, snap)
            })
            .collect();
        let mut snaps = Vec::new();
        let mut problems = Vec::new();
        for (id, r) in results {
            match r {
                Ok(s) => snaps.push((id, s)),
                // Deleted between listing and reading (a concurrent forget): simply gone.
                Err(Error::NotFound(_)) => {}
                Err(Error::Corrupt { why, .. }) => problems.push(UnreadableSnapshot { id, why }),
                Err(e) => return Err(e),
            }
        }
        if let Some(c) = &self.cache {
            c.retain(
                layout::SNAPSHOTS,
                &snaps.iter().map(|(i, _)| i.to_hex()).collect(),
            );
        }
        snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        problems.sort_by_key(|p| p.id);
        Ok((snaps, problems))
    }

    /// Snapshots that match `filter`, oldest first.
    pub fn list_snapshots_matching(
        &self,
        filter: &SnapshotFilter,
    ) -> Result<Vec<(SnapshotId, Snapshot)>> {
        Ok(self
            .list_snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect())
    }

    pub fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.storage
            .delete(&format!("{}{}", layout::SNAPSHOTS, id.to_hex()))
    }

    /// The ids of stored snapshot files whose hex starts with `prefix`, readable or not: how
    /// `forget ID` names a damaged snapshot that no listing can show.
    pub fn snapshot_ids_with_prefix(&self, prefix: &str) -> Result<Vec<SnapshotId>> {
        let prefix = prefix.to_ascii_lowercase();
        let mut ids: Vec<SnapshotId> = self
            .storage
            .list(layout::SNAPSHOTS)?
            .iter()
            .filter_map(|l| l.name.parse::<SnapshotId>().ok())
            .filter(|id| id.to_hex().starts_with(&prefix))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Resolves `latest` (newest matching `filter`) or a unique id prefix.
    ///
    /// An unreadable snapshot's time and host are unknown, so `latest` fails while any
    /// snapshot cannot be read (it may be the newest that matches), naming it and the newest
    /// readable match; a prefix naming an unreadable snapshot fails with why.
    pub fn find_snapshot(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, Snapshot)> {
        let (snaps, problems) = self.list_snapshots_lenient()?;
        if spec == "latest" {
            let newest = snaps.into_iter().rev().find(|(_, s)| filter.matches(s));
            if let Some(p) = problems.into_iter().next() {
                let alternative = match &newest {
                    Some((id, s)) => format!(
                        "the newest readable match is {} of {}: name it to restore that one",
                        id.short(),
                        s.time.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    None => "no readable snapshot matches".to_string(),
                };
                return Err(p.refusal(&format!(
                    "it may be the latest, so `latest` is not chosen; {alternative}"
                )));
            }
            return newest.ok_or_else(|| Error::NotFound("a snapshot matching the filters".into()));
        }
        let spec_l = spec.to_ascii_lowercase();
        // An id a tag replaced still finds its snapshot, now under its new id.
        let successor: Option<(SnapshotId, Snapshot)> = snaps
            .iter()
            .find(|(_, s)| {
                s.replaces
                    .is_some_and(|r| r.to_hex().starts_with(&spec_l) && spec_l.len() >= 8)
            })
            .cloned();
        let mut hits: Vec<_> = snaps
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
            .collect();
        if hits.is_empty() && problems.iter().all(|p| !p.id.to_hex().starts_with(&spec_l)) {
            if let Some((id, s)) = successor {
                tracing::info!(
                    "snapshot {spec} was replaced by {} (tags changed)",
                    id.short()
                );
                return Ok((id, s));
            }
        }
        let bad: Vec<UnreadableSnapshot> = problems
            .into_iter()
            .filter(|p| p.id.to_hex().starts_with(&spec_l))
            .collect();
        match (hits.len(), bad.len()) {
            (0, 0) => Err(Error::NotFound(format!("snapshot '{spec}'"))),
            (1, 0) => Ok(hits.pop().unwrap()),
            (0, 1) => Err(bad.into_iter().next().unwrap().refusal("")),
            (n, m) => Err(Error::Invalid(format!(
                "snapshot prefix '{spec}' is ambiguous ({} snapshots match): give more characters",
                n + m
            ))),
        }
    }
}

fn missing_pack(e: Error, path: &str) -> Error {
    match e {
        Error::NotFound(_) => Error::corrupt(
            path,
            "the index lists this pack but storage does not have it (holdfast check names \
             what it affects)",
        ),
        e => e,
    }
}

/// A snapshot file that cannot be read or authenticated.
#[derive(Debug, Clone)]
pub struct UnreadableSnapshot {
    pub id: SnapshotId,
    pub why: String,
}

impl UnreadableSnapshot {
    /// The error that stops a command because of this snapshot, with what to do about it.
    pub fn refusal(&self, consequence: &str) -> Error {
        let sep = if consequence.is_empty() { "" } else { "; " };
        Error::corrupt(
            format!("snapshot file snapshots/{}", self.id),
            format!(
                "{}{sep}{consequence} (if it cannot be recovered, `holdfast forget {}` removes it, \
                 or `holdfast repair snapshots` lists every damaged snapshot)",
                self.why,
                self.id.short()
            ),
        )
    }
}

impl std::fmt::Display for UnreadableSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snapshot {}: {}", self.id, self.why)
    }
}

fn key_path(id: &KeyId) -> String {
    format!("{}{}", layout::KEYS, id.to_hex())
}

/// Reads and checks `config` without any key.
pub fn read_config(storage: &Storage) -> Result<Config> {
    let bytes = match storage.read(layout::CONFIG) {
        Ok(b) => b,
        // A bucket has no folders: an empty prefix is simply no repository yet.
        Err(Error::NotFound(_)) if !storage.properties().has_folders => {
            return Err(Error::NoRepository(storage.location().to_string()))
        }
        Err(Error::NotFound(_)) => {
            return Err(Error::NotARepository(
                storage.location().to_string(),
                "it has no config file".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    #[derive(Deserialize)]
    struct Probe {
        holdfast_repository: u32,
    }
    let probe: Probe = serde_json::from_slice(&bytes).map_err(|_| {
        Error::NotARepository(
            storage.location().to_string(),
            "its config file is not a holdfast config".into(),
        )
    })?;
    if probe.holdfast_repository > FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            location: storage.location().to_string(),
            found: probe.holdfast_repository,
            supported: FORMAT_VERSION,
        });
    }
    let config: Config =
        serde_json::from_slice(&bytes).map_err(|e| Error::corrupt("config", e.to_string()))?;
    validate_config(storage.location(), &config)?;
    Ok(config)
}

/// `config` is not authenticated: every value is checked before it is used (the id names a
/// local cache folder; chunk and pack sizes bound memory and offsets).
fn validate_config(location: &str, c: &Config) -> Result<()> {
    let bad = |why: String| Error::corrupt(format!("config of {location}"), why);
    if c.id.len() != 64 || !c.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the repository id is not 64 hex digits".into()));
    }
    let ch = c.chunker;
    let ok = (64..=1 << 20).contains(&ch.min_size)
        && (256..=4 << 20).contains(&ch.avg_size)
        && (1024..=16 << 20).contains(&ch.max_size)
        && ch.min_size <= ch.avg_size
        && ch.avg_size <= ch.max_size;
    if !ok {
        return Err(bad(format!(
            "chunk sizes {}/{}/{} are out of range",
            ch.min_size, ch.avg_size, ch.max_size
        )));
    }
    if !(64 * 1024..=1 << 30).contains(&c.pack_size) {
        return Err(bad(format!(
            "pack size {} is outside 64 KiB..1 GiB",
            c.pack_size
        )));
    }
    if !(1..=22).contains(&c.compression_level) {
        return Err(bad(format!(
            "zstd level {} is outside 1..22",
            c.compression_level
        )));
    }
    Ok(())
}

/// Errors of index files that could not be read or decoded.
type DamagedIndexFiles = Vec<Error>;

/// The cache's copy of the merged index (see `index::table`).
const INDEX_TABLE: &str = "index.table";

fn table_error(e: TableError) -> Error {
    Error::Invalid(format!("building the index table in memory: {e}"))
}

/// Removes temporary tables that a crashed or killed build left beside `table` (an hour
/// old: a build in progress in another process is younger than that).
fn remove_stale_tables(table: &std::path::Path) {
    let Some(dir) = table.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if name.starts_with(".table-") && name.ends_with(".tmp") && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
