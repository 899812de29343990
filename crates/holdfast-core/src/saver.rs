//! Saving blobs during a backup: deduplicate, seal, fill packs, upload in the background.
//!
//! Workers hash and seal blobs in parallel; a full pack is handed to uploader threads over a
//! bounded channel, so reading never waits for storage unless storage is the bottleneck, and
//! memory stays bounded (a pack being filled per kind plus one queued per uploader).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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

pub struct BlobSaver {
    repo: Arc<Repository>,
    known: Arc<MasterIndex>,
    queued: Mutex<HashSet<BlobId>>,
    data: Mutex<PackWriter>,
    tree: Mutex<PackWriter>,
    tx: Option<SyncSender<PackWriter>>,
    uploaders: Vec<JoinHandle<(Vec<PackEntry>, Option<Error>)>>,
    failed: Arc<AtomicBool>,
    pub stats: SaverStats,
}

impl BlobSaver {
    pub fn new(repo: Arc<Repository>, uploaders: usize) -> BlobSaver {
        let known = repo.index();
        Self::with_known(repo, uploaders, known)
    }

    /// A saver that stores every blob given to it once, even those the index already has in
    /// other packs (prune moves live blobs out of mostly-unused packs).
    pub fn for_repack(repo: Arc<Repository>, uploaders: usize) -> BlobSaver {
        Self::with_known(repo, uploaders, Arc::new(MasterIndex::default()))
    }

    fn with_known(repo: Arc<Repository>, uploaders: usize, known: Arc<MasterIndex>) -> BlobSaver {
        // Rendezvous: a full pack waits for a free uploader instead of piling up in memory.
        let (tx, rx) = sync_channel::<PackWriter>(0);
        let rx = Arc::new(Mutex::new(rx));
        let failed = Arc::new(AtomicBool::new(false));
        let handles = (0..uploaders.max(1))
            .map(|_| {
                let (repo, rx, failed) = (repo.clone(), rx.clone(), failed.clone());
                std::thread::spawn(move || upload_loop(&repo, &rx, &failed))
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
            failed,
            stats: SaverStats::default(),
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

    /// Flushes partly filled packs, waits for uploads and writes index files for them.
    /// Called on failure too, so that packs already stored are indexed and reused next time.
    pub fn finish(self) -> Result<Vec<IndexId>> {
        self.finish_with_packs().map(|(ids, _)| ids)
    }

    /// Like [`BlobSaver::finish`], also returning the packs stored.
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
        let mut packs = Vec::new();
        let mut upload_err = None;
        for h in self.uploaders.drain(..) {
            let (stored, err) = h.join().expect("uploader thread panicked");
            packs.extend(stored);
            if let Some(e) = err {
                upload_err.get_or_insert(e);
            }
        }
        let index_ids = self.repo.save_index_files(packs.clone(), Vec::new())?;
        // An uploader's error names the cause; a refused send only says that one happened.
        match upload_err.or(send_err) {
            Some(e) => Err(e),
            None => Ok((index_ids, packs)),
        }
    }
}

/// Stores packs until the channel closes; returns what it stored, and the first error (after
/// which it only drains the channel, so that senders never block).
fn upload_loop(
    repo: &Repository,
    rx: &Mutex<Receiver<PackWriter>>,
    failed: &AtomicBool,
) -> (Vec<PackEntry>, Option<Error>) {
    let mut done = Vec::new();
    let mut err = None;
    loop {
        let next = rx.lock().unwrap().recv();
        let Ok(w) = next else { break };
        if err.is_some() {
            continue;
        }
        let (id, bytes, blobs) = w.finish(repo.key());
        let has_trees = blobs.iter().any(|b| b.kind == BlobKind::Tree);
        match repo.save_pack(&id, bytes, has_trees) {
            Ok(()) => done.push(PackEntry { id, blobs }),
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                err = Some(e);
            }
        }
    }
    (done, err)
}
