//! `holdfast serve` over HTTP: authentication everywhere, CSRF and read-only mode on actions,
//! hostile paths, browsing and downloads compared with the data, and where it may listen.
//! What a person sees in a browser is in `console_browser`.

use crate::common::app::write_config;
use crate::common::console::{demo, http, post_form, Console};
use crate::common::*;

#[test]
fn every_page_and_api_call_needs_a_login() {
    let env = Env::new();
    let d = demo(&env);
    let c = Console::start(&env, &d.cfg, &[]);
    let snap = &d.shop_snapshots[1];
    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&c.token_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    for page in [
        "/",
        "/runs",
        "/snapshots",
        &format!("/snapshots/{snap}/tree"),
        &format!("/snapshots/{snap}/file/README"),
    ] {
        let r = c.get(page, &[]);
        assert_eq!(r.status, 303, "{page} without a login");
        assert!(
            r.header("location").unwrap().starts_with("/login?next="),
            "{page}"
        );
        assert!(!r.text().contains("the shop"), "{page} leaked data");
    }
    for api in [
        "/api/overview",
        "/api/runs",
        "/api/snapshots",
        &format!("/api/snapshots/{snap}/tree"),
    ] {
        assert_eq!(c.get(api, &[]).status, 401, "{api}");
        assert_eq!(
            c.get(api, &[("Authorization", "Bearer nope")]).status,
            401,
            "{api}"
        );
        assert_eq!(
            c.get(api, &[("Cookie", "holdfast_session=forged")]).status,
            401,
            "{api}"
        );
    }
    // A wrong token is refused; the right one gives a session that reads everything.
    assert_eq!(c.get("/login?token=0000", &[]).status, 401);
    let cookie = c.login();
    let home = c.get("/", &[("Cookie", &cookie)]);
    assert_eq!(home.status, 200);
    assert!(home.text().contains("data-app=\"shop\""));
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    assert!(home
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(home.header("cache-control"), Some("no-store"));
    // After logging out the cookie is worth nothing.
    let csrf = c.csrf(&cookie);
    assert_eq!(
        post_form(&c, "/logout", Some(&cookie), "csrf=wrong").status,
        403
    );
    assert_eq!(
        post_form(&c, "/logout", Some(&cookie), &format!("csrf={csrf}")).status,
        303
    );
    assert_eq!(c.get("/api/overview", &[("Cookie", &cookie)]).status, 401);
    // An open redirect through the login is refused.
    let r = c.get(
        &format!("/login?token={}&next=//evil.example/", c.token),
        &[],
    );
    assert_eq!(r.header("location"), Some("/"));
}

#[test]
fn a_password_logs_in_as_its_argon2_hash_says() {
    let env = Env::new();
    let d = demo(&env);
    let mut child = env
        .cmd()
        .args(["serve", "--hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"open sesame 42\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let mut text = std::fs::read_to_string(&d.cfg).unwrap();
    text.push_str(&format!("\n[console]\npassword_hash = \"{hash}\"\n"));
    std::fs::write(&d.cfg, text).unwrap();
    let c = Console::start(&env, &d.cfg, &[]);
    let form = |secret: &str| format!("secret={}&next=%2Fruns", secret.replace(' ', "+"));
    let r = post_form(&c, "/login", None, &form("open sesame 41"));
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let r = post_form(&c, "/login", None, &form("open sesame 42"));
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/runs"));
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(c.get("/runs", &[("Cookie", &cookie)]).status, 200);
    // A malformed hash is a configuration error (exit 4), named.
    let bad = write_config(&env, "[console]\npassword_hash = \"letmein\"\n");
    let o = crate::common::app::with_config(&env, &bad, &["serve"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("password_hash"), "{}", stderr(&o));
}

#[test]
fn actions_need_a_session_and_its_csrf_token_and_read_only_refuses_them() {
    let env = Env::new();
    let d = demo(&env);
    let c = Console::start(&env, &d.cfg, &[]);
    let cookie = c.login();
    let csrf = c.csrf(&cookie);
    let before = c.api("/api/snapshots")["snapshots"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        post_form(&c, "/actions/shop/backup", None, &format!("csrf={csrf}")).status,
        303
    );
    assert_eq!(
        post_form(&c, "/actions/shop/backup", None, &format!("csrf={csrf}"))
            .header("location")
            .map(|l| l.starts_with("/login")),
        Some(true),
        "without a session: to the login"
    );
    assert_eq!(
        post_form(&c, "/actions/shop/backup", Some(&cookie), "").status,
        403
    );
    assert_eq!(
        post_form(&c, "/actions/shop/backup", Some(&cookie), "csrf=0123").status,
        403
    );
    // The bearer token reads, but cannot act.
    let r = http(
        &c.addr,
        "POST",
        "/api/actions/shop/backup",
        &[("Authorization", &c.bearer()), ("X-CSRF-Token", &csrf)],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        post_form(
            &c,
            "/actions/nosuch/backup",
            Some(&cookie),
            &format!("csrf={csrf}")
        )
        .status,
        404
    );
    assert_eq!(
        post_form(
            &c,
            "/actions/shop/format",
            Some(&cookie),
            &format!("csrf={csrf}")
        )
        .status,
        404
    );
    assert_eq!(
        c.api("/api/snapshots")["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        before,
        "a refused action ran"
    );
    // The real thing: the job runs `holdfast run --app shop`, as the scheduler does.
    let job = c.start_action(&cookie, &csrf, "shop", "backup");
    let done = c.wait_job(&job);
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_eq!(done["result"], "success");
    let lines = done["lines"].to_string();
    assert!(lines.contains("run shop: success"), "{lines}");
    assert_eq!(
        c.api("/api/snapshots")["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        before + 1
    );
    // It is a run like any other: in the run log and the repository, with its steps.
    let runs = c.api("/api/runs?app=shop&result=success");
    let newest = &runs["runs"][0];
    assert_eq!(newest["kind"], "run");
    assert!(
        newest["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["what"] == "backing up"),
        "{newest}"
    );
    // The job's page shows the result without JavaScript too.
    let page = c
        .get(&format!("/jobs/{job}"), &[("Cookie", &cookie)])
        .text();
    assert!(
        page.contains("succeeded") && page.contains("run shop: success"),
        "{page}"
    );
    drop(c);

    let ro = Console::start(&env, &d.cfg, &["--read-only"]);
    let cookie = ro.login();
    let csrf = ro.csrf_or_none(&cookie);
    let home = ro.get("/", &[("Cookie", &cookie)]).text();
    assert!(!home.contains("Back up now"), "read-only shows no actions");
    let r = post_form(
        &ro,
        "/actions/shop/backup",
        Some(&cookie),
        &format!("csrf={}", csrf.unwrap_or_default()),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("read-only"));
}

#[test]
fn a_second_action_waits_for_the_first_and_the_lock_is_the_scheduler_s() {
    let env = Env::new();
    let data = env.path("slow");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"x").unwrap();
    let cfg = write_config(
        &env,
        &format!(
            "[app.slow]\nprofile = \"generic\"\ndata_dir = \"{}\"\nconsistency = \"stop\"\n\
             [app.slow.service]\nstop = \"sleep 3\"\nstart = \"true\"\nstatus = \"true\"\n",
            data.display()
        ),
    );
    env.init();
    let c = Console::start(&env, &cfg, &[]);
    let cookie = c.login();
    let csrf = c.csrf(&cookie);
    let job = c.start_action(&cookie, &csrf, "slow", "backup");
    // The child holds the application's lock from before its first step.
    for _ in 0..100 {
        if c.api(&format!("/api/jobs/{job}"))["lines"]
            .to_string()
            .contains("preflight")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = post_form(
        &c,
        "/actions/slow/backup",
        Some(&cookie),
        &format!("csrf={csrf}"),
    );
    assert_eq!(second.status, 409, "{}", second.text());
    // A run started outside the console meanwhile meets the application's lock.
    let outside = crate::common::app::with_config(&env, &cfg, &["run", "--app", "slow"]);
    assert_eq!(code(&outside), 11, "{}", stderr(&outside));
    assert_eq!(c.wait_job(&job)["exit_code"], 0);
}

#[test]
fn hostile_paths_get_400_or_404_and_never_a_server_file() {
    let env = Env::new();
    let d = demo(&env);
    let c = Console::start(&env, &d.cfg, &[]);
    let s = &d.shop_snapshots[1];
    let auth = c.bearer();
    let h = [("Authorization", auth.as_str())];
    for (path, want) in [
        (format!("/snapshots/{s}/file/../../../../etc/passwd"), 400),
        (
            format!("/snapshots/{s}/file/orders/%2e%2e/%2e%2e/etc/passwd"),
            400,
        ),
        (
            format!("/snapshots/{s}/file/orders%2F..%2F..%2Fetc%2Fpasswd"),
            400,
        ),
        (format!("/snapshots/{s}/file/README%00.txt"), 400),
        (format!("/snapshots/{s}/tree//etc"), 400),
        (format!("/snapshots/{s}/file/etc/passwd"), 404),
        (format!("/snapshots/{s}/file//etc/passwd"), 400),
        (format!("/snapshots/{s}/tar/../.."), 400),
        (format!("/snapshots/{s}/raw/README"), 400),
        ("/snapshots/../../etc/passwd".to_string(), 400),
        ("/snapshots/%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_string(), 400),
        ("/snapshots/deadbeefdeadbeef/tree".to_string(), 404),
        (format!("/api/snapshots/{s}/tree/../../etc"), 400),
        // A symbolic link is shown, never followed: its target is on the server.
        (format!("/snapshots/{s}/file/passwd-link"), 400),
        (format!("/snapshots/{s}/tar/passwd-link"), 400),
        (format!("/snapshots/{s}/file/orders"), 400),
    ] {
        let r = c.get(&path, &h);
        assert_eq!(r.status, want, "{path}: {}", r.text());
        assert!(
            !r.text().contains("root:x:0:0"),
            "{path} served the server's /etc/passwd"
        );
    }
    let link = c
        .get(&format!("/snapshots/{s}/tree/passwd-link"), &h)
        .text();
    assert!(
        link.contains("/etc/passwd") && link.contains("Link to"),
        "{link}"
    );
    // The fallback is a 404 page, not a file.
    assert_eq!(c.get("/static/../../etc/passwd", &h).status, 404);
}

#[test]
fn browse_and_downloads_give_back_exactly_what_was_backed_up() {
    require_tool("tar");
    let env = Env::new();
    let d = demo(&env);
    let c = Console::start(&env, &d.cfg, &[]);
    let s = &d.shop_snapshots[1];
    let auth = c.bearer();
    let h = [("Authorization", auth.as_str())];
    // A file's bytes, streamed, with its name.
    let r = c.get(
        &format!("/snapshots/{}/file/orders/catalog.bin", &s[..12]),
        &h,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        std::fs::read(d.shop.join("orders/catalog.bin")).unwrap()
    );
    assert!(r
        .header("content-disposition")
        .unwrap()
        .contains("catalog.bin"));
    // A name that is not UTF-8 is reachable by its bytes.
    let r = c.get(&format!("/snapshots/{s}/file/caf%E9%20latin1.txt"), &h);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"not utf-8 name\n");
    // A folder as tar.gz: extracted, it is the folder.
    let r = c.get(&format!("/snapshots/{s}/tar/orders"), &h);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    let out = env.path("untarred");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(env.path("orders.tar.gz"), &r.body).unwrap();
    sh(&format!(
        "tar -xzf {} -C {}",
        env.path("orders.tar.gz").display(),
        out.display()
    ));
    let src = d.shop.join("orders");
    assert_same_tree_but_atime(&snapshot_tree(&src), &src, &out);
    // The tree API lists a folder with metadata.
    let t = c.api(&format!("/api/snapshots/{s}/tree/orders/2026"));
    let names: Vec<&str> = t["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["0001.json", "0002.json"]);
    let f = c.api(&format!("/api/snapshots/{s}/tree/README"));
    assert_eq!(f["entry"]["size"], 25);
    let meta = std::fs::metadata(d.shop.join("README")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(f["entry"]["mode"], meta.mode() & 0o7777);
    assert_eq!(f["entry"]["uid"], meta.uid());
    // The file's page says the same.
    let page = c.get(&format!("/snapshots/{s}/tree/README"), &h).text();
    assert!(
        page.contains("25 bytes") && page.contains("Download README"),
        "{page}"
    );
    // Diff between the two snapshots of shop.
    let diff = c.api(&format!(
        "/api/diff?a={}&b={}",
        d.shop_snapshots[0], d.shop_snapshots[1]
    ));
    let changes: Vec<(String, String)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "file")
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("added".into(), "/orders/2026/0002.json".into())),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("modified".into(), "/README".into())),
        "{changes:?}"
    );
    assert_eq!(changes.len(), 2, "{changes:?}");
}

#[test]
fn the_overview_and_runs_cover_every_app_and_host() {
    let env = Env::new();
    let d = demo(&env);
    let c = Console::start(&env, &d.cfg, &[]);
    let o = c.api("/api/overview");
    let row = |app: &str, far: bool| {
        o["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["app"] == app && (r["host"] == "far") == far)
            .unwrap_or_else(|| panic!("no row for {app} (far: {far}): {o}"))
            .clone()
    };
    let shop = row("shop", false);
    // A live backup is honest about its consistency: amber, not green.
    assert_eq!(shop["status"], "amber", "{shop}");
    assert_eq!(shop["last_run"]["result"], "success");
    assert_eq!(shop["schedule"], "0 2 * * *");
    assert!(shop["next_run"].is_string());
    let wiki = row("wiki", false);
    assert_eq!(wiki["status"], "red", "{wiki}");
    assert!(
        wiki["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("last run failed"),
        "{wiki}"
    );
    let erp = row("erp", false);
    assert_eq!(erp["status"], "green", "{erp}");
    assert!(
        erp["last_backup"]["downtime_secs"].as_f64().unwrap() >= 0.4,
        "{erp}"
    );
    assert_eq!(erp["last_backup"]["consistent"], true);
    assert_eq!(erp["last_drill"]["ok"], true, "{erp}");
    assert_eq!(o["check"]["ok"], true, "{o}");
    assert_eq!(o["check"]["app"], "erp");
    let far = row("shop", true);
    assert_eq!(far["local"], false);
    // The run of `backup --app shop --host far` is far's, like its snapshot.
    assert_eq!(far["last_run"]["kind"], "backup", "{far}");
    assert_eq!(shop["last_run"]["kind"], "run", "{shop}");
    assert!(far["last_backup"]["snapshot"].is_string());
    // Runs filter by application and result; every run is in the repository too.
    let failed = c.api("/api/runs?result=failure");
    let failed = failed["runs"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["app"], "wiki");
    let id = failed[0]["id"].as_str().unwrap();
    let one = c.api(&format!("/api/runs/{id}"));
    assert!(one["error"].is_string());
    let page = c
        .get(&format!("/runs/{id}"), &[("Authorization", &c.bearer())])
        .text();
    assert!(
        page.contains("wiki") && page.contains("class=\"error\""),
        "{page}"
    );
    assert_eq!(
        std::fs::read_dir(env.repo.join("runs")).unwrap().count(),
        6,
        "every run of holdfast run/backup --app (and erp's drill) is recorded in the repository"
    );
}

#[test]
fn it_listens_beyond_loopback_only_with_tls_or_when_told() {
    require_tool("openssl");
    let env = Env::new();
    let d = demo(&env);
    let o = crate::common::app::with_config(&env, &d.cfg, &["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("not a loopback address"),
        "{}",
        stderr(&o)
    );
    let (cert, key) = (env.path("cert.pem"), env.path("key.pem"));
    sh(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 \
         -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout {} -out {} 2>/dev/null",
        key.display(),
        cert.display()
    ));
    let c = Console::start(
        &env,
        &d.cfg,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // Plain HTTP to the TLS port gets no page.
    let plain = std::panic::catch_unwind(|| http(&c.addr, "GET", "/", &[], b""));
    assert!(plain
        .map(|r| r.status != 200 && r.status != 303)
        .unwrap_or(true));
    // Over TLS, with the certificate trusted, the API answers and sessions are Secure.
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &c.addr,
            "-CAfile",
            cert.to_str().unwrap(),
            "-verify_return_error",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            let req = format!(
                "GET /login?token={} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                c.token
            );
            ch.stdin.take().unwrap().write_all(req.as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 303"), "{text}");
    assert!(text.to_ascii_lowercase().contains("; secure"), "{text}");
    // Plain HTTP elsewhere only when asked for.
    let insecure = Console::start(&env, &d.cfg, &["--insecure-http"]);
    assert_eq!(
        insecure
            .get("/api/overview", &[("Authorization", &insecure.bearer())])
            .status,
        200
    );
}

#[test]
fn stopping_the_console_lets_a_running_backup_start_its_service_again() {
    let env = Env::new();
    let data = env.path("svc");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"x").unwrap();
    let journal = env.path("journal");
    let cfg = write_config(
        &env,
        &format!(
            "[app.svc]\nprofile = \"generic\"\ndata_dir = \"{}\"\nconsistency = \"stop\"\n\
             [app.svc.service]\nstop = \"echo stop >> {j}; sleep 2\"\nstart = \"echo start >> {j}\"\nstatus = \"true\"\n",
            data.display(),
            j = journal.display()
        ),
    );
    env.init();
    let mut c = Console::start(&env, &cfg, &[]);
    let cookie = c.login();
    let csrf = c.csrf(&cookie);
    let job = c.start_action(&cookie, &csrf, "svc", "backup");
    // A browser follows the job live: its open stream must not hold the stop up.
    let addr = c.addr.clone();
    let (auth, path) = (c.bearer(), format!("/api/jobs/{job}/events"));
    std::thread::spawn(move || http(&addr, "GET", &path, &[("Authorization", &auth)], b""));
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .contains("stop")
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = c.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    // The stop was passed on (the backup ended without a snapshot), and the service, stopped
    // by the backup, was started again before the console ended.
    let snapshots = std::fs::read_dir(env.repo.join("snapshots"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(snapshots, 0, "the backup was not told to stop");
    assert_eq!(
        std::fs::read_to_string(&journal)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["stop", "start"]
    );
}
