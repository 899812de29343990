//! `holdfast config init` writes a starting configuration that the rest of holdfast takes as
//! it is: `config check` accepts it, and `init`, `plan` and a scheduled `run` work from it
//! alone, with no repository or password given any other way.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::common::*;

/// holdfast with only the configuration file to go on.
fn from_config(env: &Env, config: &Path, args: &[&str]) -> Output {
    env.cmd()
        .env_remove("HOLDFAST_REPO")
        .env_remove("HOLDFAST_PASSWORD")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_generic_starting_configuration_backs_up_on_its_own() {
    let env = Env::new();
    let data = env.path("srv/app/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("state.json"), "{}").unwrap();
    let config = env.path("etc/holdfast/holdfast.toml");
    let password = env.path("etc/holdfast/password");
    let repo = env.path("backups/repo");

    // --print writes nothing.
    let printed = ok(from_config(
        &env,
        &config,
        &[
            "config",
            "init",
            "--data-dir",
            data.to_str().unwrap(),
            "--print",
        ],
    ));
    assert!(printed.contains("[app.app]") && printed.contains("consistency = \"live\""));
    assert!(!config.exists() && !password.exists());

    let out = ok(from_config(
        &env,
        &config,
        &[
            "--repo",
            repo.to_str().unwrap(),
            "--json",
            "config",
            "init",
            "--data-dir",
            data.to_str().unwrap(),
            "--password-file",
            password.to_str().unwrap(),
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["password_created"], true, "{v}");
    assert_eq!((mode(&config), mode(&password)), (0o600, 0o600));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("repository = \"{}\"", repo.display())));

    ok(from_config(&env, &config, &["config", "check"]));
    // The run log goes to the test's directory, not the machine's /var/lib/holdfast.
    let state = env.path("state");
    std::fs::write(
        &config,
        format!("state_dir = \"{}\"\n{text}", state.display()),
    )
    .unwrap();
    ok(from_config(
        &env,
        &config,
        &["init", "--argon2-memory", "1", "--argon2-iterations", "1"],
    ));
    ok(from_config(&env, &config, &["plan", "--app", "app"]));
    ok(from_config(&env, &config, &["run", "--app", "app"]));
    let snaps = ok(from_config(
        &env,
        &config,
        &["--json", "snapshots", "--app", "app"],
    ));
    let snaps: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert!(state.join("runs.jsonl").exists(), "the run was not logged");

    // Again: refused, nothing changed; --force rewrites it and keeps the password.
    let before = std::fs::read(&password).unwrap();
    std::fs::write(&config, format!("{text}\n# edited\n")).unwrap();
    let o = from_config(
        &env,
        &config,
        &["config", "init", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .ends_with("# edited\n"));
    ok(from_config(
        &env,
        &config,
        &[
            "--repo",
            repo.to_str().unwrap(),
            "config",
            "init",
            "--data-dir",
            data.to_str().unwrap(),
            "--password-file",
            password.to_str().unwrap(),
            "--force",
        ],
    ));
    assert_eq!(
        std::fs::read(&password).unwrap(),
        before,
        "password replaced"
    );
    ok(from_config(&env, &config, &["snapshots"]));
}

#[test]
fn a_dss_starting_configuration_passes_the_check() {
    let env = Env::new();
    let config = env.path("holdfast.toml");
    let out = ok(from_config(
        &env,
        &config,
        &[
            "config",
            "init",
            "--profile",
            "dss",
            "--app",
            "automation",
            "--data-dir",
            "/srv/dataiku/automation/data",
            "--password-file",
            env.path("pw").to_str().unwrap(),
        ],
    ));
    assert!(out.contains("holdfast plan --app automation"), "{out}");
    let check = ok(from_config(&env, &config, &["--json", "config", "check"]));
    let v: serde_json::Value = serde_json::from_str(&check).unwrap();
    let app = &v["apps"][0];
    assert_eq!(app["name"], "automation");
    assert_eq!(app["profile"], "dss");
    assert_eq!(app["consistency"], "stop");
    assert_eq!(app["excluded_tiers"], serde_json::json!(["temporary"]));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("schedule = \"15 6 * * 1-5\""));
    for tier in ["temporary", "logs", "exports", "rebuildable"] {
        assert!(text.contains(tier), "tier {tier} not described");
    }

    // Names and paths that cannot work are usage errors, and write nothing.
    let other = env.path("other.toml");
    for args in [
        ["--app", "my app", "--data-dir", "/srv/x"],
        ["--app", "x", "--data-dir", "relative/dir"],
        ["--profile", "oracle", "--data-dir", "/srv/x"],
    ] {
        let mut a = vec!["config", "init"];
        a.extend_from_slice(&args);
        let o = from_config(&env, &other, &a);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(!other.exists());
    }
}
