//! The console in a real browser (headless chromium): what a person sees on the overview, a
//! browse down to a file, a download's bytes, and "back up now" followed live to its end.
//! Set HOLDFAST_CONSOLE_SCREENSHOT=FILE to keep the overview's screenshot (the README's).

use serde_json::Value;

use crate::common::cdp::Browser;
use crate::common::console::{demo, Console};
use crate::common::*;

#[test]
fn a_person_sees_the_overview_browses_downloads_and_backs_up() {
    require_tool("chromium");
    let env = Env::new();
    let d = demo(&env);
    let c = Console::start(&env, &d.cfg, &[]);
    let here = c.api("/api/overview")["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    let mut b = Browser::launch();

    // Logging in with the printed URL lands on the overview.
    b.goto(&c.url(&format!("/login?token={}", c.token)));
    b.wait_for("document.querySelector('#overview')", "the overview");
    assert_eq!(b.eval("location.pathname"), "/");
    let rows = b.eval(
        "Array.from(document.querySelectorAll('#overview tr.app')).map(r => ({app: r.dataset.app, host: r.dataset.host, \
         badge: r.querySelector('.status').textContent, text: r.innerText}))",
    );
    let row = |app: &str, host: &str| -> Value {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["app"] == app && r["host"] == host)
            .unwrap_or_else(|| panic!("no row {app}@{host}: {rows}"))
            .clone()
    };
    let shop = row("shop", &here);
    assert_eq!(shop["badge"], "amber", "{shop}");
    let text = shop["text"].as_str().unwrap();
    assert!(text.contains("live (not consistent)"), "{text}");
    assert!(
        text.contains("Back up now") && text.contains("Drill now"),
        "{text}"
    );
    assert!(text.contains("0 2 * * *"), "{text}");
    let wiki = row("wiki", &here);
    assert_eq!(wiki["badge"], "red");
    assert!(
        wiki["text"].as_str().unwrap().contains("last run failed"),
        "{wiki}"
    );
    let erp = row("erp", &here);
    assert_eq!(erp["badge"], "green", "{erp}");
    let text = erp["text"].as_str().unwrap();
    assert!(
        text.contains("passed, recovered in") && text.contains("stop"),
        "{text}"
    );
    let far = row("shop", "far");
    // Host far's row: its own run (backup --host far), judged by the schedule that run
    // recorded; its live snapshot is amber.
    assert_eq!(far["badge"], "amber", "{far}");
    assert!(
        far["text"].as_str().unwrap().contains("last run success"),
        "{far}"
    );
    assert!(
        !far["text"].as_str().unwrap().contains("Back up now"),
        "another host's app has no actions here"
    );

    let png = b.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "the screenshot is blank ({} bytes)",
        png.len()
    );
    if let Some(to) = std::env::var_os("HOLDFAST_CONSOLE_SCREENSHOT") {
        std::fs::write(to, &png).unwrap();
    }

    // Browse: the snapshots page, the newest snapshot of shop here, down to a file.
    b.goto(&c.url("/snapshots"));
    let newest = &d.shop_snapshots[1];
    b.click(&format!("tr.snapshot[data-id='{newest}'] a"));
    b.wait_for(
        "document.querySelector('#entries')",
        "the snapshot's root folder",
    );
    let names = b.eval(
        "Array.from(document.querySelectorAll('#entries tr.entry a')).map(a => a.textContent)",
    );
    assert_eq!(
        names,
        serde_json::json!(["README", "caf\u{fffd} latin1.txt", "orders/", "passwd-link"]),
        "the root folder as listed"
    );
    b.eval("Array.from(document.querySelectorAll('#entries a')).find(a => a.textContent === 'orders/').click()");
    b.wait_for(
        "location.pathname.endsWith('/tree/orders')",
        "the orders folder",
    );
    b.wait_for("document.querySelector('#entries')", "its listing");
    let names = b.eval(
        "Array.from(document.querySelectorAll('#entries tr.entry a')).map(a => a.textContent)",
    );
    assert_eq!(names, serde_json::json!(["2026/", "catalog.bin"]));
    b.eval("Array.from(document.querySelectorAll('#entries a')).find(a => a.textContent === 'catalog.bin').click()");
    b.wait_for("document.querySelector('#file')", "the file's details");
    assert_eq!(
        b.eval("document.querySelector('#file dd.size').dataset.bytes"),
        "3000000"
    );
    let mode = b.eval("document.querySelector('#file').innerText");
    assert!(mode.as_str().unwrap().contains("-rw-"), "{mode}");

    // Download it as a person would, by clicking the link: the bytes are the file's.
    let downloads = env.path("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    b.download_to(&downloads);
    b.click("#download");
    let got = downloads.join("catalog.bin");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::metadata(&got).map(|m| m.len()).unwrap_or(0) != 3_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the download did not finish: {:?}",
            std::fs::read_dir(&downloads).unwrap().collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(d.shop.join("orders/catalog.bin")).unwrap()
    );

    // Back up now, from the overview, followed live: the page is never reloaded.
    b.goto(&c.url("/"));
    b.click(&format!(
        "tr.app[data-app='shop'][data-host='{here}'] button[value='backup']"
    ));
    b.wait_for(
        "location.pathname.startsWith('/jobs/') && document.readyState === 'complete'",
        "the job's page",
    );
    b.eval("window.stillTheSamePage = true");
    b.wait_for(
        "document.querySelector('#job-status').textContent !== 'running'",
        "the backup to end",
    );
    assert_eq!(
        b.eval("document.querySelector('#job-status').textContent"),
        "succeeded"
    );
    assert_eq!(
        b.eval("window.stillTheSamePage === true"),
        true,
        "the page was reloaded"
    );
    let log = b.eval("document.querySelector('#job-log').textContent");
    assert!(log.as_str().unwrap().contains("run shop: success"), "{log}");
    // The overview now shows that run.
    b.goto(&c.url("/"));
    let last = b.eval(&format!(
        "document.querySelector(\"tr.app[data-app='shop'][data-host='{here}'] td.last-backup\").innerText"
    ));
    assert!(
        last.as_str().unwrap().contains("just now") || last.as_str().unwrap().contains("min ago"),
        "{last}"
    );
}
