//! Downloads straight from the repository to the browser: a file's chunks, or a folder as a
//! tar.gz made on the fly. Nothing is written to the server's disk; a blocking thread reads
//! and sends pieces through a small channel, so memory stays bounded and a client that goes
//! away stops the reading (the send fails).

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use holdfast_core::snapshot::Snapshot;
use holdfast_core::tree::{Node, NodeKind};

use crate::data::{self, Fail};
use crate::state::Shared;

/// Pieces in flight between the reading thread and the connection.
const IN_FLIGHT: usize = 8;

type Tx = tokio::sync::mpsc::Sender<std::io::Result<Bytes>>;

fn body_from(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> Body {
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    }))
}

/// `Content-Disposition` for `name`: an ASCII fallback and the UTF-8 name (RFC 6266).
fn disposition(name: &[u8]) -> HeaderValue {
    let lossy = String::from_utf8_lossy(name);
    let ascii: String = lossy
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let v = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        crate::snapshot_path::encode_name(name)
    );
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("attachment"))
}

/// Writes into the channel in pieces of up to 256 KiB.
struct ChannelWriter {
    tx: Tx,
    buf: Vec<u8>,
}

const PIECE: usize = 256 * 1024;

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= PIECE {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(piece)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

/// The bytes of file `names` of snapshot `id`.
pub async fn file(st: Shared, snap: Snapshot, names: Vec<Vec<u8>>) -> Result<Response, Fail> {
    let found = data::blocking(&st, {
        let names = names.clone();
        move |st| data::lookup(st, &snap, &names)
    })
    .await?;
    let node = match found.node {
        Some(n) if n.kind == NodeKind::File => n,
        _ => {
            return Err(Fail::bad_request(
                "only a file can be downloaded this way; a folder as .tar.gz",
            ))
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let size = node.size;
    let name = node.name.0.clone();
    let repo = st.repo.clone();
    std::thread::spawn(move || send_file(&repo, &node, &tx));
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_DISPOSITION, disposition(&name)),
            (header::CONTENT_LENGTH, HeaderValue::from(size)),
        ],
        body_from(rx),
    )
        .into_response())
}

fn send_file(repo: &holdfast_core::Repository, node: &Node, tx: &Tx) {
    for id in &node.content {
        let piece = repo
            .read_blob(id)
            .map(Bytes::from)
            .map_err(|e| std::io::Error::other(e.to_string()));
        let failed = piece.is_err();
        if let Err(e) = &piece {
            tracing::warn!("console: download of {}: {e}", node.name.lossy());
        }
        if tx.blocking_send(piece).is_err() || failed {
            return;
        }
    }
}

/// Folder `names` of snapshot `snap` (the whole snapshot when empty) as a tar.gz stream.
pub async fn tar_gz(
    st: Shared,
    short_id: String,
    snap: Snapshot,
    names: Vec<Vec<u8>>,
) -> Result<Response, Fail> {
    let found = data::blocking(&st, {
        let (names, snap) = (names.clone(), snap.clone());
        move |st| data::lookup(st, &snap, &names)
    })
    .await?;
    let (root, tree) = match &found.node {
        _ if names.is_empty() => (snap.root.clone(), Some(snap.tree)),
        Some(n) if n.kind == NodeKind::Dir => (Some(n.clone()), n.subtree),
        _ => return Err(Fail::bad_request("only a folder is downloaded as .tar.gz")),
    };
    let base = names
        .last()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_else(|| "snapshot".into());
    let file_name = format!("{short_id}-{base}.tar.gz");
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let repo = st.repo.clone();
    std::thread::spawn(move || {
        let w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
        };
        let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::fast());
        let result = match tree {
            Some(tree) => holdfast_core::export::export_tar(&repo, &tree, root.as_ref(), &mut gz)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            // A folder without a listing: an empty archive.
            None => tar::Builder::new(&mut gz)
                .into_inner()
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
        .and_then(|()| {
            gz.finish()
                .and_then(|mut w| w.flush())
                .map_err(|e| e.to_string())
        });
        if let Err(e) = result {
            tracing::warn!("console: tar.gz download: {e}");
            // The stream ends with an error: the browser shows the download as failed.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            ),
            (
                header::CONTENT_DISPOSITION,
                disposition(file_name.as_bytes()),
            ),
        ],
        body_from(rx),
    )
        .into_response())
}
