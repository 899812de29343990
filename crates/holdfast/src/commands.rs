//! One function per command. Each prints human text, or with --json exactly one JSON document
//! (JSON lines for `ls` and `diff`), and returns the exit code.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use holdfast_core::backup::{self, BackupOptions, Progress};
use holdfast_core::check::{self, CheckOptions};
use holdfast_core::error::exit;
use holdfast_core::exclude::Excludes;
use holdfast_core::id::{BlobId, KeyId, PackId};
use holdfast_core::keyfile::KdfParams;
use holdfast_core::lock::LockGuard;
use holdfast_core::repo::{InitOptions, Repository};
use holdfast_core::restore::{self, RestoreOptions, RestoreProgress};
use holdfast_core::saver::Checkpoints;
use holdfast_core::snapshot::SnapshotFilter;
use holdfast_core::storage::layout;
use holdfast_core::tree::NodeKind;
use serde_json::json;

use crate::cli::*;
use crate::context::{prompt, Ctx};
use crate::format;
use crate::progress::{Bar, Show};

fn filter(f: &Filter) -> SnapshotFilter {
    SnapshotFilter {
        hosts: f.hosts.clone(),
        tags: f.tags.clone(),
        paths: f.paths.clone(),
    }
}

fn kdf(memory_mib: u32, iterations: u32) -> KdfParams {
    KdfParams {
        memory_kib: memory_mib.max(1) * 1024,
        iterations: iterations.max(1),
        ..KdfParams::default()
    }
}

pub fn init(ctx: &Ctx, a: InitArgs) -> Result<i32> {
    let location = ctx.repo_location()?;
    let storage = holdfast_app::open_storage(&location, &ctx.s3_settings(&location)?, true)?;
    let pw =
        holdfast_app::access::read_password(&ctx.password_source()?, &new_password_prompt, "")?;
    let opts = InitOptions {
        kdf: kdf(a.argon2_memory, a.argon2_iterations),
        pack_size: a.pack_size.max(1) * 1024 * 1024,
        compression_level: a.compression,
        chunker: holdfast_core::repo::ChunkerParams::with_average(a.chunk_size * 1024),
    };
    let repo = Repository::init(storage, &pw, &opts)?;
    if ctx.global.json {
        ctx.json(&json!({"repository": location, "id": repo.config().id, "version": repo.config().holdfast_repository}));
    } else {
        ctx.say(format!(
            "created holdfast repository {} at {location}",
            &repo.config().id[..8]
        ));
        ctx.say("Keep the password safe: without it the data cannot be read back.");
    }
    Ok(exit::OK)
}

fn new_password_prompt(_: &str) -> std::io::Result<String> {
    let a = prompt("new password: ")?;
    let b = prompt("repeat password: ")?;
    if a != b {
        return Err(std::io::Error::other("the passwords do not match"));
    }
    Ok(a)
}

pub fn backup_cmd(ctx: &Ctx, a: BackupArgs) -> Result<i32> {
    let patterns = Excludes::gather(&a.exclude, &a.exclude_file)?;
    let excludes = Excludes::new(&patterns, &a.exclude_if_present)?;
    let (repo, lock) = if a.dry_run {
        ctx.open_locked_dry_run(false, "backup")?
    } else {
        ctx.open_locked(false, "backup")?
    };
    let parent = match &a.parent {
        Some(p) => Some(repo.find_snapshot(p, &SnapshotFilter::default())?.0),
        None => None,
    };
    let opts = BackupOptions {
        empty_dirs: Default::default(),
        excludes: excludes.clone(),
        one_file_system: a.one_file_system,
        tags: a.tag.clone(),
        hostname: a.host.clone(),
        parent,
        force: a.force,
        record_paths_as: None,
        reread_changed: 0,
        expect_vanishing: false,
        attachments: Vec::new(),
        checkpoints: Some(checkpoints(&lock, a.checkpoint_interval)),
    };
    let progress = Arc::new(Progress::default());
    let bar = backup_bar(ctx, &progress, a.paths.clone(), excludes);
    let outcome = backup::backup(
        repo.clone(),
        &a.paths,
        &opts,
        &progress,
        &ctx.cancel,
        &mut backup::CommitCheck(|| lock.ensure_held()),
    );
    drop(bar);
    let outcome = outcome?;
    let s = &outcome.snapshot;
    for w in &s.warnings {
        crate::errln!("holdfast: warning: {}: {}", w.path, w.message);
    }
    if a.dry_run {
        say_dry_run(ctx, &outcome);
    } else if ctx.global.json {
        ctx.json(&json!({"id": outcome.id, "snapshot": s}));
    } else {
        ctx.say(format::snapshot_saved(&outcome.id, None, s));
        if !s.warnings.is_empty() {
            ctx.say(format!(
                "{} path(s) could not be backed up (see warnings above)",
                s.warnings.len()
            ));
        }
    }
    Ok(if s.warnings.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

/// What a dry-run backup found: what it would read, leave out and store.
fn say_dry_run(ctx: &Ctx, o: &backup::BackupOutcome) {
    let s = &o.snapshot.summary;
    if ctx.global.json {
        ctx.json(&json!({
            "dry_run": true,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unchanged": s.files_unchanged,
            "dirs": s.dirs,
            "bytes_read": s.bytes_read,
            "total_files": s.total_files,
            "total_bytes": s.total_bytes,
            "bytes_added": s.bytes_added,
            "bytes_stored": s.bytes_stored,
            "blobs_added": s.blobs_added,
            "excluded": o.excluded,
            "excluded_total": o.excluded_total,
            "warnings": o.snapshot.warnings,
        }));
        return;
    }
    for p in &o.excluded {
        crate::outln!("excluded  {}", p.display());
    }
    if o.excluded_total > o.excluded.len() as u64 {
        crate::outln!(
            "excluded  ... and {} more",
            o.excluded_total - o.excluded.len() as u64
        );
    }
    ctx.say(format!(
        "dry run: {} file(s) in {} ({} new, {} changed, {} unchanged); {} read; would add {} ({} stored, after deduplication, compression and encryption); {} entr(ies) excluded. Nothing was written.",
        s.total_files,
        format::bytes(s.total_bytes),
        s.files_new,
        s.files_changed,
        s.files_unchanged,
        format::bytes(s.bytes_read),
        format::bytes(s.bytes_added),
        format::bytes(s.bytes_stored),
        o.excluded_total
    ));
}

/// Intermediate index files every `every`, written while `lock` is still held.
pub fn checkpoints(lock: &LockGuard, every: holdfast_core::span::Span) -> Checkpoints {
    let witness = lock.witness();
    Checkpoints {
        every: every.as_std(),
        guard: Arc::new(move || witness.ensure_held()),
    }
}

/// Progress fed by the backup's counters (a bar on a terminal, lines when asked), with a scan
/// for the totals.
pub fn backup_bar(
    ctx: &Ctx,
    progress: &Arc<Progress>,
    paths: Vec<PathBuf>,
    excludes: Excludes,
) -> Option<Bar> {
    let show = ctx.show_progress();
    if show == Show::Nothing {
        return None;
    }
    let (p, cancel) = (progress.clone(), ctx.cancel.clone());
    std::thread::spawn(move || backup::scan(&paths, &excludes, &p, &cancel));
    let p = progress.clone();
    Some(Bar::start(show, "backup", move || {
        (
            p.bytes_done.load(Ordering::Relaxed),
            p.total_bytes.load(Ordering::Relaxed),
            p.files_done.load(Ordering::Relaxed),
            p.total_files.load(Ordering::Relaxed),
        )
    }))
}

pub fn snapshots(ctx: &Ctx, a: SnapshotsArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let f = filter(&a.filter);
    let mut snaps = repo.list_snapshots_matching(&f)?;
    snaps.retain(|(_, s)| format::app_filter(s, &a.app));
    // The newest restore drill of each snapshot, from any host.
    let drills = holdfast_core::drills::latest_by_snapshot(
        repo.drills()?.into_iter().map(|(_, r)| r).collect(),
    );
    if ctx.global.json {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                let mut v = json!({"id": id, "short_id": id.short(), "snapshot": s});
                if let Some(d) = drills.get(id) {
                    v["drill"] = json!(d);
                }
                v
            })
            .collect();
        ctx.json(&v);
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|(id, s)| {
            let (app, version) = format::app_column(s);
            let mut paths = s.paths.join(" ");
            for at in &s.attachments {
                paths.push_str(&format!(" +{}", at.name));
            }
            vec![
                id.short(),
                format::local_time(&s.time),
                s.hostname.clone(),
                app,
                version,
                match &s.consistency {
                    Some(c) if c.mode != "none" => format::consistency_line(s),
                    _ => String::new(),
                },
                s.tags.join(","),
                format::bytes(s.summary.total_bytes),
                drills.get(id).map(|d| d.verdict()).unwrap_or_default(),
                paths,
            ]
        })
        .collect();
    ctx.say(format::table(
        &[
            "ID",
            "Time",
            "Host",
            "App",
            "Version",
            "Consistency",
            "Tags",
            "Size",
            "Drill",
            "Paths",
        ],
        &rows,
    ));
    ctx.say(format!("{} snapshot(s)", snaps.len()));
    Ok(exit::OK)
}

pub fn ls(ctx: &Ctx, a: LsArgs) -> Result<i32> {
    let (repo, _lock) = ctx.open_locked(false, "ls")?;
    let (_, snap) = repo.find_snapshot(&a.snapshot, &filter(&a.filter))?;
    let print = |p: &Path, n: &holdfast_core::tree::Node| {
        if ctx.global.json {
            ctx.json(&json!({"path": p.to_string_lossy(), "node": n}));
        } else if a.long {
            let owner = n.user.clone().unwrap_or_else(|| n.uid.to_string());
            let group = n.group.clone().unwrap_or_else(|| n.gid.to_string());
            let t = chrono::DateTime::from_timestamp(n.mtime.0, n.mtime.1).unwrap_or_default();
            let link = n
                .target
                .as_ref()
                .map(|t| format!(" -> {}", t.lossy()))
                .unwrap_or_default();
            crate::outln!(
                "{} {:>8} {:>8} {:>12} {} {}{}",
                format::mode(n.kind, n.mode),
                owner,
                group,
                n.size,
                format::local_time(&t),
                p.display(),
                link
            );
        } else {
            crate::outln!("{}", p.display());
        }
    };
    match holdfast_core::walk::resolve(&repo, &snap.tree, &a.path)? {
        holdfast_core::walk::Resolved::Leaf(p, n) => print(&Path::new("/").join(p), &n),
        holdfast_core::walk::Resolved::Dir(p, tree) => {
            // Once the reader is gone (`| head`), stop descending: nothing more is shown.
            holdfast_core::walk::walk(&repo, &tree, &Path::new("/").join(p), &mut |p, n| {
                print(p, n);
                Ok(!crate::output::stdout_closed())
            })?;
        }
    }
    Ok(exit::OK)
}

pub fn find(ctx: &Ctx, a: FindArgs) -> Result<i32> {
    let (repo, _lock) = ctx.open_locked(false, "find")?;
    let f = filter(&a.filter);
    let mut snaps = if a.snapshots.is_empty() {
        repo.list_snapshots_matching(&f)?
    } else {
        a.snapshots
            .iter()
            .map(|s| repo.find_snapshot(s, &f))
            .collect::<holdfast_core::Result<Vec<_>>>()?
    };
    snaps.retain(|(_, s)| format::app_filter(s, &a.app));
    snaps.sort_by(|x, y| y.1.time.cmp(&x.1.time).then(x.0.cmp(&y.0)));
    snaps.dedup_by_key(|(id, _)| *id);
    let by_id: std::collections::HashMap<_, _> = snaps.iter().map(|(id, s)| (*id, s)).collect();
    // Matches are printed as found; only --json, one document, keeps them.
    let mut rows = Vec::new();
    let mut matches = 0usize;
    let mut holding = std::collections::HashSet::new();
    let json = ctx.global.json;
    holdfast_core::find::find(&repo, &snaps, &a.patterns, &mut |hit| {
        let s = by_id[&hit.snapshot];
        matches += 1;
        let first_in_snapshot = holding.insert(hit.snapshot);
        if json {
            rows.push(json!({
                "snapshot": hit.snapshot,
                "short_id": hit.snapshot.short(),
                "time": s.time,
                "hostname": s.hostname,
                "path": hit.path.to_string_lossy(),
                "node": hit.node,
            }));
            return true;
        }
        if first_in_snapshot {
            crate::outln!(
                "snapshot {} of {} on {}",
                hit.snapshot.short(),
                format::local_time(&s.time),
                s.hostname
            );
        }
        let n = &hit.node;
        let t = chrono::DateTime::from_timestamp(n.mtime.0, n.mtime.1).unwrap_or_default();
        crate::outln!(
            "  {} {:>12} {} {}",
            format::mode(n.kind, n.mode),
            n.size,
            format::local_time(&t),
            hit.path.display()
        );
        !crate::output::stdout_closed()
    })?;
    if json {
        ctx.json(&rows);
    } else {
        ctx.say(format!(
            "{matches} match(es) in {} of {} snapshot(s)",
            holding.len(),
            snaps.len()
        ));
    }
    Ok(exit::OK)
}

pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<i32> {
    use holdfast_core::amend::{self, TagEdit};
    let set: Vec<String> = a.set.iter().filter(|t| !t.is_empty()).cloned().collect();
    let edit = TagEdit {
        set: (!a.set.is_empty()).then_some(set),
        add: a.add.clone(),
        remove: a.remove.clone(),
    };
    let (repo, _lock) = ctx.open_locked(false, "tag")?;
    for id in amend::remove_replaced(&repo)? {
        tracing::info!("removed snapshot {}, replaced by a tagged copy", id.short());
    }
    let chosen = resolve_all(&repo, &a.snapshots, &a.app, &a.filter)?;
    let mut done = Vec::new();
    for (id, snap) in &chosen {
        let r = amend::tag(&repo, *id, snap, &edit)?;
        if !ctx.global.json {
            if r.changed {
                ctx.say(format!(
                    "snapshot {} is now {}: tags [{}]",
                    r.old.short(),
                    r.new.short(),
                    r.tags.join(", ")
                ));
            } else {
                ctx.say(format!(
                    "snapshot {} unchanged: tags [{}]",
                    r.old.short(),
                    r.tags.join(", ")
                ));
            }
        }
        done.push(r);
    }
    if ctx.global.json {
        ctx.json(&done);
    }
    Ok(exit::OK)
}

/// Each named snapshot (`latest` of `app` when one is given), each once, in the order given.
/// Every name is resolved before anything changes: a typo in the third leaves the first two
/// untouched.
fn resolve_all(
    repo: &Repository,
    specs: &[String],
    app: &Option<String>,
    f: &Filter,
) -> Result<
    Vec<(
        holdfast_core::id::SnapshotId,
        holdfast_core::snapshot::Snapshot,
    )>,
> {
    let f = filter(f);
    let mut chosen = Vec::new();
    for spec in specs {
        let (id, snap) = if spec == "latest" && app.is_some() {
            repo.list_snapshots_matching(&f)?
                .into_iter()
                .rfind(|(_, s)| format::app_filter(s, app))
                .ok_or_else(|| {
                    holdfast_core::Error::NotFound(format!(
                        "a snapshot of {} matching the filters",
                        app.as_deref().unwrap_or_default()
                    ))
                })?
        } else {
            repo.find_snapshot(spec, &f)?
        };
        if !chosen.iter().any(|(c, _)| *c == id) {
            chosen.push((id, snap));
        }
    }
    Ok(chosen)
}

pub fn rewrite(ctx: &Ctx, a: RewriteArgs) -> Result<i32> {
    use holdfast_core::amend;
    let patterns = Excludes::gather(&a.exclude, &a.exclude_file)?;
    let excludes = Excludes::new(&patterns, &[])?;
    let (repo, lock) = ctx.open_locked(false, "rewrite")?;
    if !a.dry_run {
        for id in amend::remove_replaced(&repo)? {
            tracing::info!(
                "removed snapshot {}, replaced by a changed copy",
                id.short()
            );
        }
    }
    let chosen = resolve_all(&repo, &a.snapshots, &a.app, &a.filter)?;
    let done = amend::rewrite(&repo, &chosen, &excludes, a.dry_run, &|| lock.ensure_held())?;
    if ctx.global.json {
        ctx.json(&json!({ "dry_run": a.dry_run, "snapshots": done }));
        return Ok(exit::OK);
    }
    for r in &done {
        let files: u64 = r.removed.iter().map(|x| x.files).sum();
        let bytes: u64 = r.removed.iter().map(|x| x.bytes).sum();
        for x in &r.removed {
            let slash = if x.kind == NodeKind::Dir { "/" } else { "" };
            crate::outln!("-    {}{slash}", x.path.display());
        }
        let what = format!("{files} file(s), {}", format::bytes(bytes));
        ctx.say(match (r.removed.is_empty(), r.new, a.dry_run) {
            (true, _, _) => format!("snapshot {}: nothing matches, unchanged", r.old.short()),
            (false, _, true) => format!(
                "snapshot {}: would take out {} entr(ies), {what} (dry run: nothing written)",
                r.old.short(),
                r.removed.len()
            ),
            (false, new, false) => format!(
                "snapshot {} is now {}: took out {} entr(ies), {what}",
                r.old.short(),
                new.map(|n| n.short()).unwrap_or_default(),
                r.removed.len()
            ),
        });
    }
    if !a.dry_run && done.iter().any(|r| r.new.is_some()) {
        ctx.say("the data taken out is freed by the next prune");
    }
    Ok(exit::OK)
}

pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<i32> {
    use holdfast_app::mount::{self, MountOptions, Mounted, SnapshotFs};
    let (spec, dir) = match a.args.as_slice() {
        [dir] => (None, PathBuf::from(dir)),
        [spec, dir] => (Some(spec.clone()), PathBuf::from(dir)),
        _ => bail!("give the mount point, and a snapshot before it to mount only that one"),
    };
    // No lock: a mount left open must not stop prune (see holdfast_app::mount).
    let repo = ctx.open()?;
    repo.load_index().context("loading the index")?;
    let what = match spec {
        Some(spec) => {
            let (id, snap) = resolve_all(&repo, &[spec], &a.app, &a.filter)?
                .pop()
                .expect("one name resolves to one snapshot");
            Mounted::One(id, Box::new(snap))
        }
        None => {
            let mut snaps = repo.list_snapshots_matching(&filter(&a.filter))?;
            snaps.retain(|(_, s)| format::app_filter(s, &a.app));
            Mounted::All(snaps)
        }
    };
    let what_said = match &what {
        Mounted::One(id, _) => format!("snapshot {}", id.short()),
        Mounted::All(s) => format!("{} snapshot(s)", s.len()),
    };
    let fs = SnapshotFs::new(repo, what);
    let session = mount::mount(
        fs,
        &dir,
        &MountOptions {
            allow_other: a.allow_other,
        },
    )
    .with_context(|| {
        format!(
            "mounting at {} (FUSE needs /dev/fuse, and root or fusermount3 from the fuse3 package)",
            dir.display()
        )
    })?;
    ctx.say(format!(
        "{what_said} mounted read-only at {}; Ctrl-C or umount {} ends it",
        dir.display(),
        dir.display()
    ));
    while !ctx.cancelled() && !session.guard.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Unmounted from outside (umount DIR), the session has ended by itself, and unmounting
    // again may fail: only an unmount of ours that fails is an error.
    let ended_outside = session.guard.is_finished();
    if let Err(e) = session.umount_and_join() {
        if !ended_outside {
            return Err(e).with_context(|| format!("unmounting {}", dir.display()));
        }
    }
    ctx.say(format!("unmounted {}", dir.display()));
    Ok(exit::OK)
}

pub fn diff(ctx: &Ctx, a: DiffArgs) -> Result<i32> {
    let (repo, _lock) = ctx.open_locked(false, "diff")?;
    let f = filter(&a.filter);
    let (ia, sa) = repo.find_snapshot(&a.from, &f)?;
    let (ib, sb) = repo.find_snapshot(&a.to, &f)?;
    let entries = holdfast_core::diff::diff(&repo, &sa.tree, &sb.tree)?;
    if ctx.global.json {
        for e in &entries {
            ctx.json(e);
        }
        return Ok(exit::OK);
    }
    ctx.say(format!("comparing {} with {}", ia.short(), ib.short()));
    let mut counts = [0usize; 4];
    for e in &entries {
        use holdfast_core::diff::Change::*;
        let (sym, i) = match e.change {
            Added => ("+", 0),
            Removed => ("-", 1),
            Modified => ("M", 2),
            Metadata => ("U", 3),
        };
        counts[i] += 1;
        let slash = if e.kind == NodeKind::Dir { "/" } else { "" };
        crate::outln!("{sym}    {}{slash}", e.path);
    }
    ctx.say(format!(
        "{} added, {} removed, {} modified, {} metadata only",
        counts[0], counts[1], counts[2], counts[3]
    ));
    Ok(exit::OK)
}

pub fn restore_cmd(ctx: &Ctx, a: RestoreArgs) -> Result<i32> {
    let (repo, _lock) = ctx.open_locked(false, "restore")?;
    let (id, snap) = repo.find_snapshot(&a.snapshot, &filter(&a.filter))?;
    let target = a.target.clone().expect("clap requires --target here");
    if a.dry_run {
        return restore_dry_run(ctx, &repo, id, &snap, &a, &target);
    }
    let code = restore_files(ctx, &repo, id, &snap, &a, &target)?;
    if !snap.attachments.is_empty() && !ctx.global.json {
        let names: Vec<&str> = snap.attachments.iter().map(|x| x.name.as_str()).collect();
        ctx.say(format!(
            "the snapshot also holds database dumps ({}): restore them with --db-target URL, --app NAME, or --dumps-to DIR",
            names.join(", ")
        ));
    }
    Ok(code)
}

fn restore_options(a: &RestoreArgs, target: &Path) -> RestoreOptions {
    RestoreOptions {
        target: target.to_path_buf(),
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        overwrite: a.overwrite,
        verify: a.verify,
        owners: holdfast_core::fsmeta::OwnerPolicy {
            numeric: a.numeric_owner,
        },
    }
}

/// `restore --dry-run` of files: each entry with what the restore would do (`+` create, `M`
/// replace, `.` keep a directory, `!` refuse), then the totals. Exit code 14 when data is
/// missing, 1 when the restore would be refused.
fn restore_dry_run(
    ctx: &Ctx,
    repo: &Repository,
    id: holdfast_core::id::SnapshotId,
    snap: &holdfast_core::snapshot::Snapshot,
    a: &RestoreArgs,
    target: &Path,
) -> Result<i32> {
    use holdfast_core::restore::preview::{self, Action};
    let json = ctx.global.json;
    let p = preview::preview(
        repo,
        snap,
        &restore_options(a, target),
        false,
        &mut |path, node, action| {
            if json || crate::output::stdout_closed() {
                return;
            }
            let sym = match action {
                Action::Create => "+",
                Action::Replace => "M",
                Action::Keep => ".",
                Action::Refuse => "!",
            };
            let slash = if node.kind == NodeKind::Dir { "/" } else { "" };
            crate::outln!("{sym}    {}{slash}", path.display());
        },
    )?;
    let code = dry_run_code(p.missing_chunks, p.refused.is_some() || p.refuse > 0);
    if json {
        ctx.json(&json!({"dry_run": true, "snapshot": id, "preview": p}));
        return Ok(code);
    }
    ctx.say(format!(
        "dry run of snapshot {} into {}: {} file(s) ({}), {} to create, {} to replace, {} directories kept{}. Nothing was written.",
        id.short(),
        target.display(),
        p.files,
        format::bytes(p.bytes),
        p.create,
        p.replace,
        p.keep,
        if p.refuse > 0 { format!(", {} in the way (no --overwrite)", p.refuse) } else { String::new() }
    ));
    if let Some(why) = &p.refused {
        ctx.say(format!("the restore would be refused: {why}"));
    }
    if p.missing_chunks > 0 {
        ctx.say(format!(
            "{} chunk(s) of these files are missing from the repository: the restore would fail (run holdfast check)",
            p.missing_chunks
        ));
    }
    Ok(code)
}

/// The exit code of a dry run: 14 when data is missing, 1 when the real run would be refused.
pub fn dry_run_code(missing_chunks: u64, refused: bool) -> i32 {
    if missing_chunks > 0 {
        exit::INTEGRITY
    } else if refused {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Restores the files of `snap` into `target` as `a` asks; prints the report.
pub fn restore_files(
    ctx: &Ctx,
    repo: &Repository,
    id: holdfast_core::id::SnapshotId,
    snap: &holdfast_core::snapshot::Snapshot,
    a: &RestoreArgs,
    target: &Path,
) -> Result<i32> {
    let opts = restore_options(a, target);
    let progress = Arc::new(RestoreProgress::default());
    let p = progress.clone();
    let bar = Bar::start(ctx.show_progress(), "restore", move || {
        (
            p.bytes_done.load(Ordering::Relaxed),
            p.total_bytes.load(Ordering::Relaxed),
            p.files_done.load(Ordering::Relaxed),
            0,
        )
    });
    let report = restore::restore(repo, snap, &opts, &progress, &ctx.cancel);
    drop(bar);
    let report = report.with_context(|| {
        format!(
            "restoring snapshot {} into {}",
            id.short(),
            target.display()
        )
    })?;
    for w in &report.warnings {
        crate::errln!("holdfast: warning: {w}");
    }
    if ctx.global.json {
        ctx.json(&json!({"snapshot": id, "target": target, "report": report}));
    } else {
        ctx.say(format!(
            "restored snapshot {} into {}: {} files ({}), {} directories, {} links{}",
            id.short(),
            target.display(),
            report.files,
            format::bytes(report.bytes),
            report.dirs,
            report.links,
            if a.verify {
                format!(", {} files verified", report.verified_files)
            } else {
                String::new()
            }
        ));
    }
    Ok(if report.warnings.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

pub fn check_cmd(ctx: &Ctx, a: CheckArgs) -> Result<i32> {
    let subset = a.read_data_subset.map(|s| s.fraction());
    // Not open_locked: a damaged index file must be reported by check, not stop it. And not
    // through the cache: check verifies what the repository holds.
    let repo = ctx.open_cached(a.with_cache && !ctx.global.no_cache)?;
    let _lock = holdfast_core::lock::LockGuard::acquire(repo.storage(), false, "check")?;
    let report = check::check(
        &repo,
        &CheckOptions {
            read_data: a.read_data,
            read_subset: subset,
        },
    )?;
    if ctx.global.json {
        ctx.json(&json!({"ok": report.ok(), "report": report}));
    } else {
        for w in &report.warnings {
            crate::errln!("holdfast: warning: {w}");
        }
        for e in &report.errors {
            crate::outln!("error: {e}");
        }
        for d in &report.damaged {
            crate::outln!("damaged: snapshot {} {}", d.snapshot, d.path);
        }
        for n in &report.next_steps {
            crate::outln!("next: {n}");
        }
        ctx.say(format!(
            "{}: {} snapshots, {} trees, {} packs indexed{}",
            if report.ok() {
                "no errors found"
            } else {
                "check FAILED"
            },
            report.snapshots,
            report.trees,
            report.packs_indexed,
            if report.packs_read > 0 {
                format!(
                    ", {} packs and {} blobs read and verified",
                    report.packs_read, report.blobs_read
                )
            } else {
                String::new()
            }
        ));
    }
    if !report.ok() {
        crate::errln!(
            "holdfast: error: check found {} problem(s){}",
            report.errors.len(),
            if report.damaged.is_empty() {
                String::new()
            } else {
                format!(" affecting {} path(s)", report.damaged.len())
            }
        );
        return Ok(exit::INTEGRITY);
    }
    Ok(exit::OK)
}

pub fn repair_cmd(ctx: &Ctx, c: RepairCommand) -> Result<i32> {
    // Exclusive: a repair replaces index files and snapshots; nothing may add to them meanwhile.
    let repo = ctx.open_cached(false)?;
    let lock = holdfast_core::lock::LockGuard::acquire(repo.storage(), true, "repair")?;
    match c {
        RepairCommand::Index => {
            let r = holdfast_core::repair::repair_index(&repo)?;
            drop(lock);
            if ctx.global.json {
                ctx.json(&r);
                return Ok(exit::OK);
            }
            for p in &r.packs_recovered {
                ctx.say(format!("indexed again from its header: pack {p}"));
            }
            for p in &r.packs_missing {
                ctx.say(format!("dropped from the index (not in storage): pack {p}"));
            }
            for p in &r.index_files_damaged {
                ctx.say(format!("removed damaged index file {p}"));
            }
            for p in &r.packs_unreadable {
                crate::errln!("holdfast: warning: pack {p}: header unreadable, not indexed");
            }
            ctx.say(format!(
                "{} packs stored: {} kept as indexed, {} indexed again, {} unreadable; {} index file(s) written",
                r.packs_stored,
                r.packs_kept,
                r.packs_recovered.len(),
                r.packs_unreadable.len(),
                r.index_files_written
            ));
            Ok(exit::OK)
        }
        RepairCommand::Snapshots(a) => {
            repo.load_index()
                .context("loading the index (run `holdfast repair index` first)")?;
            let r = holdfast_core::repair::repair_snapshots(&repo, a.apply)?;
            drop(lock);
            if ctx.global.json {
                ctx.json(&r);
                return Ok(exit::OK);
            }
            for d in &r.damaged {
                let short = &d.id[..8];
                match (&d.unreadable, a.apply) {
                    (Some(why), true) => {
                        ctx.say(format!("removed unreadable snapshot {short}: {why}"))
                    }
                    (Some(why), false) => {
                        ctx.say(format!("snapshot {short} cannot be read: {why}"))
                    }
                    (None, _) => {
                        ctx.say(format!(
                            "snapshot {short} ({} on {}) lost {} path(s):",
                            d.time.as_deref().unwrap_or("?"),
                            d.hostname.as_deref().unwrap_or("?"),
                            d.lost.len()
                        ));
                        for p in &d.lost {
                            ctx.say(format!("  {p}"));
                        }
                        if let Some(n) = &d.replaced_by {
                            ctx.say(format!("  replaced by snapshot {}", &n[..8]));
                        }
                    }
                }
            }
            ctx.say(format!(
                "{} snapshot(s) checked, {} damaged{}",
                r.snapshots_checked,
                r.damaged.len(),
                if a.apply || r.damaged.is_empty() {
                    ""
                } else {
                    " (dry run: nothing changed; --apply rewrites them)"
                }
            ));
            Ok(exit::OK)
        }
    }
}

pub fn stats(ctx: &Ctx, a: StatsArgs) -> Result<i32> {
    let (repo, _lock) = ctx.open_locked(false, "stats")?;
    let only = if a.snapshots.is_empty() {
        None
    } else {
        Some(
            a.snapshots
                .iter()
                .map(|s| {
                    repo.find_snapshot(s, &SnapshotFilter::default())
                        .map(|x| x.0)
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let s = holdfast_core::stats::stats(&repo, only.as_deref())?;
    if ctx.global.json {
        ctx.json(&s);
    } else {
        let rows = vec![
            vec!["snapshots".into(), s.snapshots.to_string()],
            vec!["files (all snapshots)".into(), s.files.to_string()],
            vec!["logical size".into(), format::bytes(s.logical_bytes)],
            vec![
                "unique data".into(),
                format!(
                    "{} in {} blobs",
                    format::bytes(s.unique_bytes),
                    s.unique_blobs
                ),
            ],
            vec!["stored".into(), format::bytes(s.stored_bytes)],
            vec![
                "repository stored".into(),
                format!(
                    "{} in {} packs",
                    format::bytes(s.repository_stored_bytes),
                    s.packs
                ),
            ],
            vec!["deduplication".into(), format!("{:.2}x", s.dedup_ratio)],
            vec!["compression".into(), format!("{:.2}x", s.compression_ratio)],
        ];
        ctx.say(
            format::table(&["", ""], &rows)
                .lines()
                .skip(2)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    Ok(exit::OK)
}

fn read_new_password(file: &Option<PathBuf>) -> Result<Vec<u8>> {
    let src = match file {
        Some(f) => holdfast_app::PasswordSource::File(f.clone()),
        None => holdfast_app::PasswordSource::Prompt,
    };
    Ok(holdfast_app::access::read_password(
        &src,
        &new_password_prompt,
        "",
    )?)
}

pub fn key(ctx: &Ctx, k: KeyCommand) -> Result<i32> {
    match k {
        KeyCommand::Add(n) => {
            let repo = ctx.open()?;
            let pw = read_new_password(&n.new_password_file)?;
            let id = repo.add_key(&pw, kdf(n.argon2_memory, n.argon2_iterations))?;
            if ctx.global.json {
                ctx.json(&json!({"added": id}));
            } else {
                ctx.say(format!("added key {}", id.short()));
            }
        }
        KeyCommand::List => {
            let repo = ctx.open()?;
            let keys = repo.list_keys()?;
            if ctx.global.json {
                let v: Vec<_> = keys.iter().map(|(id, k)| json!({"id": id, "current": *id == repo.key_id(), "created": k.created, "hostname": k.hostname, "username": k.username})).collect();
                ctx.json(&v);
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|(id, k)| {
                        vec![
                            if *id == repo.key_id() {
                                "*".into()
                            } else {
                                " ".into()
                            },
                            id.short(),
                            format::local_time(&k.created),
                            k.username.clone(),
                            k.hostname.clone(),
                        ]
                    })
                    .collect();
                ctx.say(format::table(&["", "ID", "Created", "User", "Host"], &rows));
            }
        }
        KeyCommand::Remove { id } => {
            let repo = ctx.open()?;
            let _lock =
                holdfast_core::lock::LockGuard::acquire(repo.storage(), true, "key remove")?;
            let keys = repo.list_keys()?;
            let hits: Vec<KeyId> = keys
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| k.to_hex().starts_with(&id.to_ascii_lowercase()))
                .collect();
            let kid = match hits.as_slice() {
                [one] => *one,
                [] => bail!("no key '{id}'"),
                _ => bail!("key prefix '{id}' is ambiguous"),
            };
            repo.remove_key(&kid)?;
            if ctx.global.json {
                ctx.json(&json!({"removed": kid}));
            } else {
                ctx.say(format!("removed key {}", kid.short()));
            }
        }
        KeyCommand::Passwd(n) => {
            let repo = ctx.open()?;
            let _lock =
                holdfast_core::lock::LockGuard::acquire(repo.storage(), true, "key passwd")?;
            let pw = read_new_password(&n.new_password_file)?;
            let old = repo.key_id();
            let id = repo.add_key(&pw, kdf(n.argon2_memory, n.argon2_iterations))?;
            repo.storage()
                .delete(&format!("{}{}", layout::KEYS, old.to_hex()))?;
            if ctx.global.json {
                ctx.json(&json!({"added": id, "removed": old}));
            } else {
                ctx.say(format!(
                    "password changed: key {} replaces {}",
                    id.short(),
                    old.short()
                ));
            }
        }
    }
    Ok(exit::OK)
}

pub fn cat(ctx: &Ctx, a: CatArgs) -> Result<i32> {
    let need_id = || {
        a.id.clone()
            .ok_or_else(|| crate::usage!("`cat {}` needs an id", a.what))
    };
    let location = ctx.repo_location()?;
    let out: serde_json::Value = match a.what.as_str() {
        "config" => {
            let storage = holdfast_app::open_storage(&location, &ctx.s3_settings(&location)?, false)?;
            serde_json::to_value(holdfast_core::repo::read_config(&storage)?)?
        }
        "locks" => {
            let storage = holdfast_app::open_storage(&location, &ctx.s3_settings(&location)?, false)?;
            let v: Vec<_> = holdfast_core::lock::list_locks(&storage)?;
            serde_json::to_value(v)?
        }
        "keys" => {
            let repo = ctx.open()?;
            serde_json::to_value(repo.list_keys()?.into_iter().map(|(id, k)| json!({"id": id, "key": k})).collect::<Vec<_>>())?
        }
        "snapshot" => {
            let repo = ctx.open()?;
            let (id, s) = repo.find_snapshot(&need_id()?, &SnapshotFilter::default())?;
            json!({"id": id, "snapshot": s})
        }
        "index" => {
            let repo = ctx.open()?;
            let mut files = Vec::new();
            for l in repo.storage().list(layout::INDEX)? {
                let f = holdfast_core::index::IndexFile::open(&l.path, repo.key(), &repo.storage().read(&l.path)?)?;
                files.push(json!({"id": l.name, "index": f}));
            }
            serde_json::to_value(files)?
        }
        "pack" => {
            let repo = ctx.open()?;
            let id: PackId = need_id()?.parse()?;
            let bytes = repo.storage().read(&layout::pack_path(&id.to_hex()))?;
            let header = holdfast_core::pack::read_header(&id.to_hex(), repo.key(), &bytes)?;
            json!({"id": id, "size": bytes.len(), "blobs": header})
        }
        "tree" | "blob" => {
            let repo = ctx.open()?;
            repo.load_index()?;
            let id: BlobId = need_id()?.parse()?;
            let plain = repo.read_blob(&id)?;
            if a.what == "tree" {
                serde_json::from_slice(&plain)?
            } else {
                use std::io::Write;
                std::io::stdout().write_all(&plain)?;
                return Ok(exit::OK);
            }
        }
        other => return Err(crate::usage!("cannot cat '{other}': use config, snapshot ID, index, pack ID, tree ID, blob ID, keys or locks")),
    };
    crate::outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(exit::OK)
}

pub fn unlock(ctx: &Ctx, a: UnlockArgs) -> Result<i32> {
    let location = ctx.repo_location()?;
    let storage = holdfast_app::open_storage(&location, &ctx.s3_settings(&location)?, false)?;
    holdfast_core::repo::read_config(&storage)?;
    let removed = holdfast_core::lock::unlock(&storage, a.all)?;
    if ctx.global.json {
        ctx.json(&json!({"removed": removed}));
    } else {
        ctx.say(format!("removed {} lock(s)", removed.len()));
    }
    Ok(exit::OK)
}

pub fn forget(ctx: &Ctx, a: ForgetArgs) -> Result<i32> {
    let policy = a.rules.policy();
    if policy.is_empty() && a.snapshots.is_empty() {
        return Err(crate::usage!(
            "no snapshots and no --keep-* policy given: refusing to forget everything"
        ));
    }
    if !policy.is_empty() && !a.snapshots.is_empty() {
        return Err(crate::usage!(
            "give snapshot ids or a --keep-* policy, not both"
        ));
    }
    let (repo, lock) = ctx.open_locked(true, "forget")?;
    let f = filter(&a.filter);
    let selection = if a.snapshots.is_empty() {
        holdfast_core::forget::Selection::Policy
    } else {
        holdfast_core::forget::Selection::Named(&a.snapshots)
    };
    let report = holdfast_core::forget::forget(
        &repo,
        &lock,
        selection,
        &|s| f.matches(s),
        &a.rules,
        a.dry_run,
    )?;
    drop(lock);
    if ctx.global.json {
        ctx.json(&report);
        return Ok(exit::OK);
    }
    let (decisions, damaged) = (&report.decisions, &report.unreadable);
    let mut group = String::new();
    for d in decisions {
        if d.group != group {
            group = d.group.clone();
            ctx.say(format!("{group}:"));
        }
        ctx.say(format!(
            "  {} {}  {}  {}",
            if d.keep {
                "keep  "
            } else if a.dry_run {
                "would remove"
            } else {
                "remove"
            },
            d.id.short(),
            format::local_time(&d.time),
            d.reasons.join(", ")
        ));
    }
    for id in damaged {
        ctx.say(format!(
            "  {} {}  (snapshot file cannot be read; named on the command line)",
            if a.dry_run { "would remove" } else { "remove" },
            id.short()
        ));
    }
    let gone = decisions.iter().filter(|d| !d.keep).count() + damaged.len();
    ctx.say(format!(
        "{} kept, {} {}",
        decisions.len() + damaged.len() - gone,
        gone,
        if a.dry_run {
            "would be removed (dry run: nothing changed)"
        } else {
            "removed"
        }
    ));
    if let Some(r) = &report.prune {
        say_prune(ctx, r);
    }
    Ok(exit::OK)
}

fn say_prune(ctx: &Ctx, r: &holdfast_core::prune::PruneReport) {
    ctx.say(format!(
        "{}{} of {} packs deleted, {} repacked, {} unindexed leftovers deleted; {} unused blobs; {} freed{}",
        if r.dry_run { "dry run: " } else { "" },
        r.packs_deleted,
        r.packs_total,
        r.packs_repacked,
        r.packs_unindexed_deleted,
        r.blobs_removed,
        format::bytes(r.bytes_freed.saturating_sub(r.bytes_repacked)),
        if r.dry_run { " would be" } else { "" }
    ));
}

pub fn copy_cmd(ctx: &Ctx, a: CopyArgs) -> Result<i32> {
    let mut s3 = ctx.s3_settings(&a.from_repo)?;
    if a.from_s3_endpoint.is_some() {
        s3.endpoint = a.from_s3_endpoint.clone();
    }
    if a.from_s3_region.is_some() {
        s3.region = a.from_s3_region.clone();
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("HOLDFAST_FROM_AWS_ACCESS_KEY_ID"),
        var("HOLDFAST_FROM_AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => {
            s3.explicit = Some(holdfast_core::storage::S3Credentials {
                access_key_id,
                secret_access_key,
            })
        }
        (None, None) => {}
        _ => return Err(crate::usage!(
            "set both HOLDFAST_FROM_AWS_ACCESS_KEY_ID and HOLDFAST_FROM_AWS_SECRET_ACCESS_KEY, or neither"
        )),
    }
    let password = if let Some(f) = &a.from_password_file {
        holdfast_app::PasswordSource::File(f.clone())
    } else if let Some(c) = &a.from_password_command {
        holdfast_app::PasswordSource::Command(c.clone())
    } else if let Ok(p) = std::env::var("HOLDFAST_FROM_PASSWORD") {
        holdfast_app::PasswordSource::Value(p)
    } else {
        ctx.password_source()?
    };
    let src = holdfast_app::open_repository(
        &holdfast_app::Access {
            repo: a.from_repo.clone(),
            password,
            use_cache: !ctx.global.no_cache,
            s3,
        },
        &prompt,
    )
    .with_context(|| format!("opening the source repository {}", a.from_repo))?;
    let _src_lock = holdfast_core::lock::LockGuard::acquire(src.storage(), false, "copy")?;
    src.load_index().context("loading the source index")?;
    let (dst, lock) = ctx.open_locked(false, "copy")?;
    if src.config().id == dst.config().id {
        bail!("source and destination are the same repository");
    }
    let f = filter(&a.filter);
    let wanted: Vec<_> = if a.snapshots.is_empty() {
        src.list_snapshots_matching(&f)?
    } else {
        a.snapshots
            .iter()
            .map(|p| src.find_snapshot(p, &f))
            .collect::<Result<_, _>>()?
    };
    let report = holdfast_core::copy::copy(
        &src,
        dst,
        &wanted,
        &ctx.cancel,
        &checkpoints(&lock, a.checkpoint_interval),
    )?;
    if ctx.global.json {
        ctx.json(&json!({
            "copied": report.copied.iter().map(|(s, d)| json!({"from": s, "to": d})).collect::<Vec<_>>(),
            "skipped": report.skipped,
            "bytes_added": report.bytes_added,
            "bytes_stored": report.bytes_stored,
        }));
    } else {
        for (s, d) in &report.copied {
            ctx.say(format!("copied snapshot {} as {}", s.short(), d.short()));
        }
        ctx.say(format!(
            "{} copied, {} already there; {} added ({} stored)",
            report.copied.len(),
            report.skipped.len(),
            format::bytes(report.bytes_added),
            format::bytes(report.bytes_stored)
        ));
    }
    Ok(exit::OK)
}

pub fn prune_cmd(ctx: &Ctx, a: PruneArgs) -> Result<i32> {
    let threshold = a.repack_threshold.fraction();
    let (repo, _lock) = ctx.open_locked(true, "prune")?;
    let r = holdfast_core::prune::prune(
        &repo,
        &holdfast_core::prune::PruneOptions {
            repack_threshold: threshold,
            dry_run: a.dry_run,
        },
    )?;
    if ctx.global.json {
        ctx.json(&r);
    } else {
        say_prune(ctx, &r);
    }
    Ok(exit::OK)
}

pub fn export(ctx: &Ctx, a: ExportArgs) -> Result<i32> {
    use std::io::Write;
    let format = match (&a.format, a.output.as_str()) {
        (Some(f), _) => f.clone(),
        (None, o) if o.ends_with(".tar.gz") || o.ends_with(".tgz") => "tar.gz".into(),
        (None, o) if o.ends_with(".tar.zst") || o.ends_with(".tzst") => "tar.zst".into(),
        _ => "tar".into(),
    };
    let (repo, _lock) = ctx.open_locked(false, "export")?;
    let (id, snap) = repo.find_snapshot(&a.snapshot, &filter(&a.filter))?;
    let (tree, root) = match holdfast_core::walk::resolve(&repo, &snap.tree, &a.path)? {
        holdfast_core::walk::Resolved::Dir(p, t) => {
            let root = if p.as_os_str().is_empty() {
                snap.root.clone()
            } else {
                None
            };
            (t, root)
        }
        holdfast_core::walk::Resolved::Leaf(p, _) => {
            bail!("'{}' is not a directory; export a directory", p.display())
        }
    };
    // Write beside the destination and rename when complete: a failed export never leaves a
    // file that looks like a finished archive.
    let (sink, partial): (Box<dyn Write>, Option<PathBuf>) = if a.output == "-" {
        (
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            None,
        )
    } else {
        let partial = PathBuf::from(format!("{}.partial", a.output));
        let f = std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        (
            Box::new(std::io::BufWriter::with_capacity(1 << 20, f)),
            Some(partial),
        )
    };
    let result = (|| -> Result<holdfast_core::export::ExportReport> {
        Ok(match format.as_str() {
            "tar.gz" => {
                let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
                let r = holdfast_core::export::export_tar(&repo, &tree, root.as_ref(), &mut gz)?;
                gz.finish()?.flush()?;
                r
            }
            "tar.zst" => {
                let mut z = zstd::stream::write::Encoder::new(sink, 3)?;
                let r = holdfast_core::export::export_tar(&repo, &tree, root.as_ref(), &mut z)?;
                z.finish()?.flush()?;
                r
            }
            _ => {
                let mut sink = sink;
                let r = holdfast_core::export::export_tar(&repo, &tree, root.as_ref(), &mut sink)?;
                sink.flush()?;
                r
            }
        })
    })();
    let report = match (result, &partial) {
        (Ok(r), Some(p)) => {
            std::fs::File::open(p)?.sync_all()?;
            std::fs::rename(p, &a.output)?;
            r
        }
        (Ok(r), None) => r,
        (Err(e), p) => {
            if let Some(p) = p {
                let _ = std::fs::remove_file(p);
            }
            return Err(e.context(format!("exporting snapshot {}", id.short())));
        }
    };
    if ctx.global.json {
        if a.output != "-" {
            ctx.json(
                &json!({"snapshot": id, "output": a.output, "format": format, "report": report}),
            );
        }
    } else if a.output != "-" {
        ctx.say(format!(
            "exported snapshot {} to {} ({format}): {} entries, {}",
            id.short(),
            a.output,
            report.entries,
            format::bytes(report.bytes)
        ));
    }
    Ok(exit::OK)
}

pub fn import(ctx: &Ctx, a: ImportArgs) -> Result<i32> {
    let (repo, lock) = ctx.open_locked(false, "import")?;
    let mut archives = a.archives.clone();
    archives.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (holdfast_core::import::date_from_name(&name), p.clone())
    });
    let mut tags = vec!["imported".to_string()];
    tags.extend(a.tag.iter().cloned());
    // Filed as an application's: recorded like its backups, so `run --app` expires them.
    let mut extra = std::collections::BTreeMap::new();
    let mut as_path = a.as_path.clone();
    if let Some(name) = &a.app {
        let app_cfg = ctx.config()?.app(name)?;
        let app = holdfast_app::resolved::Resolved::new(name, app_cfg);
        as_path = as_path.or_else(|| Some(app.data_dir().to_string_lossy().into_owned()));
        // The archive holds the whole directory: no tier was left out of it.
        extra.insert(
            "app".to_string(),
            holdfast_app::procedure::app_record(&app, None, &[]),
        );
    }
    let opts = holdfast_core::import::ImportOptions {
        as_path,
        extra,
        hostname: a.host.clone(),
        tags,
        strip_components: a.strip_components,
        allow_absolute_symlinks: !a.refuse_absolute_symlinks,
        max_file_bytes: Some(a.max_file_size),
        max_total_bytes: Some(a.max_total_size),
        checkpoints: Some(checkpoints(&lock, a.checkpoint_interval)),
    };
    let mut done = Vec::new();
    for archive in &archives {
        let imported = holdfast_core::import::import_tar(repo.clone(), archive, &opts)?;
        let m = &imported.snapshot.summary;
        ctx.say(format!(
            "imported {} as snapshot {} ({}): {} files, {} read, {} added",
            archive.display(),
            imported.id.short(),
            format::local_time(&imported.snapshot.time),
            m.total_files,
            format::bytes(m.bytes_read),
            format::bytes(m.bytes_added)
        ));
        done.push(json!({"archive": archive, "id": imported.id, "snapshot": imported.snapshot}));
    }
    if ctx.global.json {
        ctx.json(&done);
    }
    Ok(exit::OK)
}
