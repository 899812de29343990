//! Flipped bytes in a pack: check --read-data names the pack and the damaged paths, and files
//! stored elsewhere still restore.

use crate::common::*;

#[test]
fn corrupt_pack_is_named_and_unaffected_files_restore() {
    let env = Env::new();
    let src = env.path("data");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("b")).unwrap();
    random_file(&src.join("a/victim.bin"), 2 * 1024 * 1024, 1);
    random_file(&src.join("b/survivor.bin"), 2 * 1024 * 1024, 2);
    env.init_small_packs();
    env.backup(&src);
    env.ok(&["check", "--read-data"]);

    // Find the pack holding the victim's first chunk.
    let ls = env.ok(&["ls", "latest", "a", "--json"]);
    let node: serde_json::Value =
        serde_json::from_str(ls.lines().find(|l| l.contains("victim")).unwrap()).unwrap();
    let blob = node["node"]["content"][0].as_str().unwrap().to_string();
    let index = env.json(&["cat", "index"]);
    let (mut pack, mut offset) = (String::new(), 0u64);
    for f in index.as_array().unwrap() {
        for p in f["index"]["packs"].as_array().unwrap() {
            for b in p["blobs"].as_array().unwrap() {
                if b["id"] == blob.as_str() {
                    pack = p["id"].as_str().unwrap().to_string();
                    offset = b["offset"].as_u64().unwrap();
                }
            }
        }
    }
    assert!(!pack.is_empty(), "blob {blob} not in the index");
    let pack_path = env.repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = std::fs::read(&pack_path).unwrap();
    for i in 0..8 {
        bytes[offset as usize + 1000 + i] ^= 0x5a;
    }
    std::fs::write(&pack_path, &bytes).unwrap();

    // The structural check cannot see inside packs; reading data does.
    let o = env.run(&["check", "--read-data"]);
    assert_eq!(code(&o), 14, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&pack), "pack not named: {out}");
    assert!(
        out.contains("/a/victim.bin"),
        "damaged path not named: {out}"
    );
    assert!(!out.contains("survivor"), "unaffected file reported: {out}");
    let json = env.run(&["check", "--read-data", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["report"]["damaged"][0]["path"], "/a/victim.bin");

    // The unaffected file restores; the damaged one is a clear integrity error.
    let t1 = env.path("t1");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        t1.to_str().unwrap(),
        "--include",
        "b/**",
        "--no-cache",
    ]);
    assert_eq!(
        std::fs::read(t1.join("b/survivor.bin")).unwrap(),
        std::fs::read(src.join("b/survivor.bin")).unwrap()
    );
    let t2 = env.path("t2");
    let o = env.run(&[
        "restore",
        "latest",
        "--target",
        t2.to_str().unwrap(),
        "--include",
        "a/**",
    ]);
    assert_eq!(code(&o), 14, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("authentication failed"),
        "{}",
        stderr(&o)
    );
}
