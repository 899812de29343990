//! Saving blobs during a backup: deduplicate, seal, fill packs, upload in the background.
//!
//! Workers hash and seal blobs in parallel; a full pack is handed to uploader threads over a
//! bounded channel, so reading never waits for storage unless storage is the bottleneck, and
//! memory stays bounded (a pack being filled per kind plus one queued per uploader).
//!
//! A long backup also writes intermediate index files (checkpoints) for the packs stored so
//! far: a backup killed after hours of uploading then loses at most one interval of work, as
//! the next run deduplicates against what the checkpoints list. A checkpoint is written only
//! while the repository lock is known to be held, for the same reason as the final index: a
//! prune that took over a stale lock may have deleted the packs it would name.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId};
use crate::index::{MasterIndex, PackEntry};
use crate::pack::{BlobKind, PackWriter};
use crate::repo::Repository;

#[derive(Default, Debug)]
pub struct SaverStats {
    pub blobs_added: AtomicU64,
    pub bytes_added: AtomicU64,
    pub bytes_stored: AtomicU64,
}

/// Fails when committing is no longer safe (the repository lock was lost).
pub type CommitGuard = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// When to write intermediate index files, and how to tell that it is safe.
#[derive(Clone)]
pub struct Checkpoints {
    /// Time between two checkpoints; the first comes one interval after the saver starts.
    pub every: Duration,
    pub guard: CommitGuard,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// Packs stored and not yet listed in an index file, and the index files written so far.
struct Stored {
    unindexed: Vec<PackEntry>,
    index_files: Vec<IndexId>,
    last_checkpoint: Instant,
}

pub struct BlobSaver {
    repo: Arc<Repository>,
    known: Arc<MasterIndex>,
    queued: Mutex<HashSet<BlobId>>,
    data: Mutex<PackWriter>,
    tree: Mutex<PackWriter>,
    tx: Option<SyncSender<PackWriter>>,
    uploaders: Vec<JoinHandle<Option<Error>>>,
    stored: Arc<Mutex<Stored>>,
    spare: Arc<SpareBuffers>,
    failed: Arc<AtomicBool>,
    /// The checkpoints' guard, also asked by [`BlobSaver::ensure_committable`].
    guard: Option<CommitGuard>,
    pub stats: SaverStats,
}

impl BlobSaver {
    pub fn new(repo: Arc<Repository>, uploaders: usize) -> BlobSaver {
        let known = repo.index();
        Self::with_known(repo, uploaders, known, None)
    }

    /// A saver that also writes an index file for the packs stored so far every
    /// `checkpoints.every`, while `checkpoints.guard` allows it (as [`BlobSaver::new`] when
    /// there are none).
    pub fn with_checkpoints(
        repo: Arc<Repository>,
        uploaders: usize,
        checkpoints: Option<Checkpoints>,
    ) -> BlobSaver {
        let known = repo.index();
        Self::with_known(repo, uploaders, known, checkpoints)
    }

    /// A saver that stores every blob given to it once, even those the index already has in
    /// other packs (prune moves live blobs out of mostly-unused packs).
    pub fn for_repack(repo: Arc<Repository>, uploaders: usize) -> BlobSaver {
        Self::with_known(repo, uploaders, Arc::new(MasterIndex::default()), None)
    }

    fn with_known(
        repo: Arc<Repository>,
        uploaders: usize,
        known: Arc<MasterIndex>,
        checkpoints: Option<Checkpoints>,
    ) -> BlobSaver {
        // Rendezvous: a full pack waits for a free uploader instead of piling up in memory.
        let (tx, rx) = sync_channel::<PackWriter>(0);
        let rx = Arc::new(Mutex::new(rx));
        let failed = Arc::new(AtomicBool::new(false));
        let stored = Arc::new(Mutex::new(Stored {
            unindexed: Vec::new(),
            index_files: Vec::new(),
            last_checkpoint: Instant::now(),
        }));
        let guard = checkpoints.as_ref().map(|cp| cp.guard.clone());
        let spare = Arc::new(SpareBuffers::default());
        let checkpointing = Arc::new(Mutex::new(()));
        let handles = (0..uploaders.max(1))
            .map(|_| {
                let uploader = Uploader {
                    repo: repo.clone(),
                    rx: rx.clone(),
                    failed: failed.clone(),
                    stored: stored.clone(),
                    spare: spare.clone(),
                    checkpoints: checkpoints.clone(),
                    checkpointing: checkpointing.clone(),
                };
                std::thread::spawn(move || uploader.run())
            })
            .collect();
        BlobSaver {
            known,
            repo,
            queued: Mutex::new(HashSet::new()),
            data: Mutex::new(PackWriter::new()), // grows once; later packs are preallocated
            tree: Mutex::new(PackWriter::new()),
            tx: Some(tx),
            uploaders: handles,
            stored,
            spare,
            failed,
            guard,
            stats: SaverStats::default(),
        }
    }

    /// Fails when the checkpoints' guard says committing is no longer safe (the lock was
    /// lost); asked before the final index and the snapshot are written.
    pub fn ensure_committable(&self) -> Result<()> {
        match &self.guard {
            Some(guard) => guard(),
            None => Ok(()),
        }
    }

    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Whether a blob with this id is already stored or queued.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.known.contains(id) || self.queued.lock().unwrap().contains(id)
    }

    /// Stores `plain` unless a blob with the same id exists; returns its id.
    pub fn save(&self, kind: BlobKind, plain: &[u8]) -> Result<BlobId> {
        let id = self.repo.key().blob_id(plain);
        if self.known.contains(&id) || !self.queued.lock().unwrap().insert(id) {
            return Ok(id);
        }
        thread_local! {
            // Sealed blobs are copied into a pack at once: one buffer per worker serves all.
            static SEALED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let full = SEALED.with(|sealed| {
            let mut sealed = sealed.borrow_mut();
            self.repo.seal_blob_into(plain, &mut sealed);
            self.stats.blobs_added.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_added
                .fetch_add(plain.len() as u64, Ordering::Relaxed);
            self.stats
                .bytes_stored
                .fetch_add(sealed.len() as u64, Ordering::Relaxed);
            let mut w = match kind {
                BlobKind::Data => self.data.lock().unwrap(),
                BlobKind::Tree => self.tree.lock().unwrap(),
            };
            w.add(kind, id, &sealed, plain.len());
            if w.len() as u64 >= self.repo.config().pack_size {
                Some(std::mem::replace(&mut *w, self.new_writer()))
            } else {
                None
            }
        });
        if let Some(w) = full {
            self.send(w)?;
        }
        Ok(id)
    }

    fn new_writer(&self) -> PackWriter {
        if let Some(buf) = self.spare.take() {
            return PackWriter::with_buffer(buf);
        }
        let c = self.repo.config();
        PackWriter::with_capacity(c.pack_size as usize + c.chunker.max_size as usize + 64 * 1024)
    }

    fn send(&self, w: PackWriter) -> Result<()> {
        if self.has_failed() {
            return Err(Error::Invalid("storing a pack failed".into()));
        }
        self.tx
            .as_ref()
            .expect("saver not finished")
            .send(w)
            .map_err(|_| Error::Invalid("the pack uploader stopped".into()))
    }

    /// Flushes partly filled packs, waits for uploads and writes index files for the packs no
    /// checkpoint listed; returns every index file written. Called on failure too, so that
    /// packs already stored are indexed and reused next time.
    pub fn finish(self) -> Result<Vec<IndexId>> {
        self.finish_with_packs().map(|(ids, _)| ids)
    }

    /// Like [`BlobSaver::finish`], also returning the packs that the final index files list
    /// (every pack stored, for a saver without checkpoints).
    pub fn finish_with_packs(mut self) -> Result<(Vec<IndexId>, Vec<PackEntry>)> {
        let data = std::mem::take(&mut *self.data.lock().unwrap());
        let tree = std::mem::take(&mut *self.tree.lock().unwrap());
        let mut send_err = None;
        for w in [data, tree] {
            if !w.is_empty() {
                if let Err(e) = self.send(w) {
                    send_err.get_or_insert(e);
                }
            }
        }
        drop(self.tx.take());
        let mut upload_err = None;
        for h in self.uploaders.drain(..) {
            if let Some(e) = h.join().expect("uploader thread panicked") {
                upload_err.get_or_insert(e);
            }
        }
        let (packs, mut index_ids) = {
            let mut stored = self.stored.lock().unwrap();
            (
                std::mem::take(&mut stored.unindexed),
                std::mem::take(&mut stored.index_files),
            )
        };
        index_ids.extend(self.repo.save_index_files(packs.clone(), Vec::new())?);
        // An uploader's error names the cause; a refused send only says that one happened.
        match upload_err.or(send_err) {
            Some(e) => Err(e),
            None => Ok((index_ids, packs)),
        }
    }
}

/// The buffer of a stored pack, kept for the next pack. A new pack buffer is a fresh mapping
/// whose every page the kernel zeroes on first touch: for a first backup's hundreds of MiB of
/// packs that zeroing was about 4% of the CPU time. One is kept, not more: a second spare
/// made peak memory 10-25 MiB higher without being faster.
#[derive(Default)]
struct SpareBuffers(Mutex<Vec<Vec<u8>>>);

impl SpareBuffers {
    const KEPT: usize = 1;

    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap().pop()
    }

    fn give(&self, buf: Vec<u8>) {
        let mut spare = self.0.lock().unwrap();
        if spare.len() < Self::KEPT {
            spare.push(buf);
        }
    }
}

/// One uploader thread's share of the saver.
struct Uploader {
    repo: Arc<Repository>,
    rx: Arc<Mutex<Receiver<PackWriter>>>,
    failed: Arc<AtomicBool>,
    stored: Arc<Mutex<Stored>>,
    spare: Arc<SpareBuffers>,
    checkpoints: Option<Checkpoints>,
    /// Held while a checkpoint is written: one at a time, so that at most one index file
    /// can follow a lock check that passed just before the lock was lost.
    checkpointing: Arc<Mutex<()>>,
}

impl Uploader {
    /// Stores packs until the channel closes; returns the first error (after which it only
    /// drains the channel, so that senders never block).
    fn run(self) -> Option<Error> {
        let mut err = None;
        loop {
            let next = self.rx.lock().unwrap().recv();
            let Ok(w) = next else { break };
            if err.is_some() {
                continue;
            }
            let (id, bytes, blobs) = w.finish(self.repo.key());
            let has_trees = blobs.iter().any(|b| b.kind == BlobKind::Tree);
            match self.repo.save_pack(&id, bytes, has_trees) {
                Ok(reusable) => {
                    if let Some(buf) = reusable {
                        self.spare.give(buf);
                    }
                    self.stored
                        .lock()
                        .unwrap()
                        .unindexed
                        .push(PackEntry { id, blobs });
                    self.checkpoint();
                }
                Err(e) => {
                    self.failed.store(true, Ordering::Relaxed);
                    err = Some(e);
                }
            }
        }
        err
    }

    /// Writes an index file for the packs stored so far when the interval has passed. A
    /// checkpoint that cannot be written is not an error: its packs wait for the next one, or
    /// for the final index, which reports failures.
    fn checkpoint(&self) {
        let Some(cp) = &self.checkpoints else { return };
        // Another uploader is writing one: these packs wait for the next.
        let Ok(_writing) = self.checkpointing.try_lock() else {
            return;
        };
        let packs = {
            let mut stored = self.stored.lock().unwrap();
            if stored.last_checkpoint.elapsed() < cp.every || stored.unindexed.is_empty() {
                return;
            }
            stored.last_checkpoint = Instant::now();
            std::mem::take(&mut stored.unindexed)
        };
        let written =
            (cp.guard)().and_then(|()| self.repo.save_index_files(packs.clone(), Vec::new()));
        let mut stored = self.stored.lock().unwrap();
        match written {
            Ok(ids) => {
                tracing::debug!("checkpoint: {} packs indexed", packs.len());
                stored.index_files.extend(ids);
            }
            Err(e) => {
                tracing::warn!("could not write an intermediate index (retried later): {e}");
                stored.unindexed.extend(packs);
            }
        }
    }
}
