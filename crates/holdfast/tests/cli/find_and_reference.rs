//! `find` across snapshots, and the shell completions and man pages generated from the
//! command-line definitions.

use std::collections::BTreeSet;

use crate::common::*;

/// The subcommands `holdfast --help` lists (the generated references must name each).
fn subcommands(env: &Env) -> Vec<String> {
    let help = env.ok(&["--help"]);
    let listed: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A description wrapped onto the next line is indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(listed.len() > 20, "subcommands from --help: {listed:?}");
    listed
}

fn find_across_snapshots(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("projects/P1")).unwrap();
    std::fs::create_dir_all(src.join("projects/P2/sub")).unwrap();
    std::fs::create_dir_all(src.join("shared/deep")).unwrap();
    std::fs::write(src.join("projects/P1/params"), "one").unwrap();
    std::fs::write(src.join("projects/P2/sub/params"), "two!").unwrap();
    std::fs::write(src.join("shared/deep/model.bin"), "m").unwrap();
    std::fs::write(src.join("a.csv"), "1,2\n").unwrap();
    let first = env.backup(&src)["id"].as_str().unwrap().to_string();
    std::fs::remove_file(src.join("projects/P1/params")).unwrap();
    std::fs::write(src.join("b.csv"), "3,4,5\n").unwrap();
    let second = env.backup(&src)["id"].as_str().unwrap().to_string();

    let hits = |args: &[&str]| -> Vec<(String, String, u64)> {
        let mut a = vec!["find"];
        a.extend_from_slice(args);
        env.json(&a)
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["snapshot"].as_str().unwrap()[..8].to_string(),
                    h["path"].as_str().unwrap().to_string(),
                    h["node"]["size"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let (f, s) = (first[..8].to_string(), second[..8].to_string());

    // A name anywhere; newest snapshot first, with each entry's size.
    assert_eq!(
        hits(&["params"]),
        vec![
            (s.clone(), "/projects/P2/sub/params".into(), 4),
            (f.clone(), "/projects/P1/params".into(), 3),
            (f.clone(), "/projects/P2/sub/params".into(), 4),
        ]
    );
    // Paths: at any depth, `*` stopping at a slash, `**` not; anchored at the root.
    assert_eq!(
        hits(&["projects/*/params"]),
        vec![(f.clone(), "/projects/P1/params".into(), 3)]
    );
    assert_eq!(hits(&["projects/**/params"]).len(), 3);
    assert_eq!(hits(&["/shared/*/model.bin"]).len(), 2, "in both snapshots");
    assert!(
        hits(&["/deep/model.bin"]).is_empty(),
        "anchored at the root"
    );
    // Several patterns: any may match; one snapshot only.
    assert_eq!(
        hits(&["*.csv", "model.bin", "--snapshot", &second])
            .into_iter()
            .map(|h| h.1)
            .collect::<BTreeSet<_>>(),
        ["/a.csv", "/b.csv", "/shared/deep/model.bin"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert!(hits(&["nothing-like-this"]).is_empty());

    // Human output names the snapshot, then its matches.
    let out = env.ok(&["find", "b.csv"]);
    assert!(out.contains(&format!("snapshot {s}")), "{out}");
    assert!(out.contains("/b.csv") && !out.contains(&f), "{out}");

    // A pattern that is not a glob is a usage error that names it.
    let o = env.run(&["find", "a[b"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("a[b"), "{}", stderr(&o));
}

on_both_backends!(find_across_snapshots);

#[test]
fn completions_name_every_subcommand_for_each_shell() {
    let env = Env::new();
    let commands = subcommands(&env);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = env.ok(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell} completion lacks {c}");
        }
    }
    // Flags complete too: a subcommand's own option appears in the script.
    assert!(env
        .ok(&["completions", "bash"])
        .contains("--checkpoint-interval"));
    assert!(env
        .ok(&["completions", "fish"])
        .contains("checkpoint-interval"));
    let o = env.run(&["completions", "tcsh"]);
    assert_eq!(code(&o), 2, "an unknown shell is a usage error");
}

#[test]
fn man_pages_for_holdfast_and_every_subcommand() {
    let env = Env::new();
    let dir = env.path("man/man1");
    let out = env.json(&["man", dir.to_str().unwrap()]);
    let pages: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(out["pages"].as_array().unwrap().len(), pages.len(), "{out}");
    let mut expected = vec!["holdfast.1".to_string()];
    expected.extend(subcommands(&env).iter().map(|c| format!("holdfast-{c}.1")));
    for page in &expected {
        assert!(pages.contains(page), "no {page} in {pages:?}");
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is not roff"
        );
    }
    // Nested commands get pages too, and a page carries the long help.
    assert!(pages.contains("holdfast-repair-index.1"), "{pages:?}");
    let find = std::fs::read_to_string(dir.join("holdfast-find.1")).unwrap();
    assert!(
        find.contains("leading slash"),
        "long help missing from the page"
    );
}

fn snapshot_list(env: &Env) -> Vec<(String, Vec<String>)> {
    env.json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["snapshot"]["tags"]
                    .as_array()
                    .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn tags_are_added_removed_and_set(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "1").unwrap();
    env.ok(&["backup", src.to_str().unwrap(), "--tag", "daily"]);
    std::fs::write(src.join("f"), "2").unwrap();
    let second = env.backup(&src)["id"].as_str().unwrap().to_string();

    let r = env.json(&["tag", "latest", "--add", "keep", "--add", "pre-upgrade-14"]);
    let new = r[0]["new"].as_str().unwrap().to_string();
    assert_eq!(r[0]["old"], second.as_str());
    assert_ne!(new, second, "a changed snapshot has a new id");
    let list = snapshot_list(&env);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        list[1],
        (new.clone(), vec!["keep".into(), "pre-upgrade-14".into()])
    );
    assert_eq!(
        list[0].1,
        vec!["daily".to_string()],
        "the other snapshot untouched"
    );
    // The old id still names it, and it restores as before.
    let out = env.path("out");
    env.ok(&["restore", &second[..12], "--target", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "2");

    // Unchanged: same id. Remove, set, clear.
    let r = env.json(&["tag", &new[..12], "--add", "keep"]);
    assert_eq!(
        (r[0]["changed"].as_bool(), r[0]["new"].as_str()),
        (Some(false), Some(new.as_str()))
    );
    env.ok(&["tag", &new[..12], "--remove", "pre-upgrade-14"]);
    assert_eq!(snapshot_list(&env)[1].1, vec!["keep".to_string()]);
    let first = snapshot_list(&env)[0].0.clone();
    env.ok(&["tag", &first[..12], "--set", "a", "--set", "b"]);
    assert_eq!(
        snapshot_list(&env)[0].1,
        vec!["a".to_string(), "b".to_string()]
    );
    let latest = snapshot_list(&env)[1].0.clone();
    env.ok(&["tag", &latest[..12], "--set", ""]);
    assert!(snapshot_list(&env)[1].1.is_empty());

    // Nothing to change, a mix of --set and --add, or an unknown snapshot: usage errors or
    // not found, and nothing written.
    assert_eq!(code(&env.run(&["tag", "latest"])), 2);
    assert_eq!(
        code(&env.run(&["tag", "latest", "--set", "x", "--add", "y"])),
        2
    );
    let o = env.run(&["tag", "latest", "deadbeef", "--add", "x"]);
    assert_ne!(code(&o), 0);
    assert!(
        snapshot_list(&env)[1].1.is_empty(),
        "a failed tag changed a snapshot"
    );
}

on_both_backends!(tags_are_added_removed_and_set);

/// A crash between storing the tagged snapshot and deleting the old one leaves both: listings
/// show the new one only, and the next forget deletes the old before it could reappear.
#[test]
fn a_tag_interrupted_before_the_old_snapshot_is_deleted() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let old = env.backup(&src)["id"].as_str().unwrap().to_string();
    let old_file = env.repo.join("snapshots").join(&old);
    let saved = std::fs::read(&old_file).unwrap();
    let new = env.json(&["tag", "latest", "--add", "keep"])[0]["new"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!old_file.exists());
    std::fs::write(&old_file, &saved).unwrap(); // as if the delete never happened

    assert_eq!(
        snapshot_list(&env),
        vec![(new.clone(), vec!["keep".to_string()])]
    );
    let hits = env.json(&["find", "f"]);
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    env.ok(&["forget", "--keep-tag", "keep"]);
    assert!(!old_file.exists(), "forget left the replaced snapshot");
    assert_eq!(snapshot_list(&env).len(), 1);
    env.ok(&["check"]);
}
