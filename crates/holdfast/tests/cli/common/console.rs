//! A running `holdfast serve` for the console tests, a minimal HTTP/1.1 client that sends
//! paths exactly as written (no normalising of `..`, unlike most clients), and the demo data
//! the console and browser tests share.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::app::{ok_config, with_config, write_config};
use super::Env;

/// `holdfast serve` on a free loopback port; stopped (SIGTERM, then waited for) when dropped.
pub struct Console {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub token: String,
    pub token_file: PathBuf,
}

impl Console {
    pub fn start(env: &Env, cfg: &Path, extra: &[&str]) -> Console {
        let mut child = env
            .cmd()
            .env("HOLDFAST_CONFIG", cfg)
            .args(["--json", "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve did not say where it listens ({e}): {line:?}"));
        let url = v["listening"].as_str().unwrap();
        let addr = url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let token_file = PathBuf::from(v["token_file"].as_str().unwrap());
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_string();
        Console {
            child,
            addr,
            token,
            token_file,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        http(&self.addr, "GET", path, headers, b"")
    }

    /// A session cookie (`holdfast_session=...`), logged in with the token.
    pub fn login(&self) -> String {
        let r = self.get(&format!("/login?token={}", self.token), &[]);
        assert_eq!(r.status, 303, "{}", r.text());
        let set = r.header("set-cookie").expect("a session cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        set.split(';').next().unwrap().to_string()
    }

    /// The CSRF token of a session, from the overview's forms.
    pub fn csrf(&self, cookie: &str) -> String {
        let page = self.get("/", &[("Cookie", cookie)]).text();
        let at = page
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token");
        page[at + 19..at + 19 + 64].to_string()
    }

    /// The CSRF token if the page has a form (a read-only console has only the logout form).
    pub fn csrf_or_none(&self, cookie: &str) -> Option<String> {
        let page = self.get("/", &[("Cookie", cookie)]).text();
        let at = page.find("name=\"csrf\" value=\"")?;
        Some(page[at + 19..at + 19 + 64].to_string())
    }

    /// Starts action `kind` (`backup`, `drill`) of `app` as the overview's button does, with
    /// a session and its CSRF token; returns the job's id, from the redirect to its page.
    pub fn start_action(&self, cookie: &str, csrf: &str, app: &str, kind: &str) -> String {
        let r = post_form(
            self,
            &format!("/actions/{app}/{kind}"),
            Some(cookie),
            &format!("csrf={csrf}"),
        );
        assert_eq!(r.status, 303, "{}", r.text());
        let to = r.header("location").expect("a redirect to the job");
        to.strip_prefix("/jobs/")
            .unwrap_or_else(|| panic!("not a job's page: {to}"))
            .to_string()
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// GET with the bearer token, as JSON.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let r = self.get(path, &[("Authorization", &self.bearer())]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Waits until job `id` has ended; returns it.
    pub fn wait_job(&self, id: &str) -> serde_json::Value {
        for _ in 0..600 {
            let j = self.api(&format!("/api/jobs/{id}"));
            if !j["exit_code"].is_null() {
                return j;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("job {id} did not end within a minute");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request, `path` sent byte for byte; the whole answer (chunked bodies decoded).
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let end = at + rest[at..].windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(
                std::str::from_utf8(&rest[at..end])
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[end + 2..end + 2 + size]);
            at = end + 2 + size + 2;
        }
        rest = out;
    }
    Resp {
        status,
        headers,
        body: rest,
    }
}

/// `application/x-www-form-urlencoded` POST with a cookie.
pub fn post_form(c: &Console, path: &str, cookie: Option<&str>, form: &str) -> Resp {
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(ck) = cookie {
        h.push(("Cookie", ck));
    }
    http(&c.addr, "POST", path, &h, form.as_bytes())
}

/// Demo data: three applications configured here (`shop`, backed up live twice; `wiki`,
/// whose run fails; `erp`, stopped for its backup, checked and drilled), `shop` also backed
/// up as host `far`. Returns the configuration and shop's data.
pub struct Demo {
    pub cfg: PathBuf,
    pub shop: PathBuf,
    /// The two snapshots of shop on this host, oldest first.
    pub shop_snapshots: Vec<String>,
}

pub fn demo(env: &Env) -> Demo {
    let shop = env.path("shop");
    std::fs::create_dir_all(shop.join("orders/2026")).unwrap();
    std::fs::write(shop.join("orders/2026/0001.json"), b"{\"total\": 12}\n").unwrap();
    std::fs::write(shop.join("README"), b"the shop\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(shop.join("orders/catalog.bin"), &big).unwrap();
    std::fs::write(
        shop.join(std::ffi::OsStr::from_bytes_compat(b"caf\xe9 latin1.txt")),
        b"not utf-8 name\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", shop.join("passwd-link")).unwrap();
    let erp = env.path("erp");
    std::fs::create_dir_all(erp.join("ledger")).unwrap();
    std::fs::write(erp.join("ledger/2026.db"), b"invoices").unwrap();
    let cfg = write_config(
        env,
        &format!(
            "[app.shop]\nprofile = \"generic\"\ndata_dir = \"{}\"\nconsistency = \"live\"\nschedule = \"0 2 * * *\"\n\n\
             [app.wiki]\nprofile = \"generic\"\ndata_dir = \"{}\"\nconsistency = \"live\"\nschedule = \"0 3 * * 1-5\"\n\n\
             [app.erp]\nprofile = \"generic\"\ndata_dir = \"{}\"\nconsistency = \"stop\"\nschedule = \"30 1 * * *\"\n\
             [app.erp.service]\nstop = \"sleep 0.4\"\nstart = \"true\"\nstatus = \"true\"\n\
             [app.erp.check]\nevery = \"1d\"\n[app.erp.drill]\nevery = \"7d\"\n",
            shop.display(),
            env.path("wiki-missing").display(),
            erp.display()
        ),
    );
    env.init();
    ok_config(env, &cfg, &["run", "--app", "shop"]);
    std::fs::write(shop.join("orders/2026/0002.json"), b"{\"total\": 30}\n").unwrap();
    std::fs::write(shop.join("README"), b"the shop, second edition\n").unwrap();
    ok_config(env, &cfg, &["run", "--app", "shop"]);
    let failed = with_config(env, &cfg, &["run", "--app", "wiki"]);
    assert!(
        !failed.status.success(),
        "wiki's run should fail: its data dir is missing"
    );
    ok_config(env, &cfg, &["backup", "--app", "shop", "--host", "far"]);
    // Stopped for its backup, checked, and drilled (the drill is due at its first run).
    ok_config(env, &cfg, &["run", "--app", "erp"]);
    let listed: serde_json::Value =
        serde_json::from_str(&ok_config(env, &cfg, &["snapshots", "--json"])).unwrap();
    let mut shop_snapshots: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["snapshot"]["hostname"] != "far" && s["snapshot"]["app"]["name"] == "shop")
        .map(|s| {
            (
                s["snapshot"]["time"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    shop_snapshots.sort();
    assert_eq!(shop_snapshots.len(), 2, "{listed}");
    Demo {
        cfg,
        shop,
        shop_snapshots: shop_snapshots.into_iter().map(|(_, id)| id).collect(),
    }
}

/// `OsStr` from raw bytes, for names that are not UTF-8.
trait FromBytesCompat {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}
