//! `scripts/fetch_data.py`, the step of `scripts/setup.sh` that downloads, checks and unpacks LFW
//! on a machine without a copy of it, run against a small archive served by an HTTP server on
//! 127.0.0.1 that this test starts (and stops): downloads that break off and resume with a Range
//! request (within a run and across runs), a server that ignores ranges, checksum mismatches,
//! truncated and hostile archives, the message when nothing can be downloaded, and a second run
//! that fetches nothing. The last test checks the LFW copy in `data/lfw` against the manifest
//! checksum the script holds.
//!
//! Expected checksums come from other tools than the script: `md5sum`, and `sha256sum` over the
//! sorted image list (how `../shared/data/lfw/SHA256SUMS` was made).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Longest any one run of the script may take.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script() -> PathBuf {
    repo().join("scripts/fetch_data.py")
}

/// The set-up's Python (`FACEREC_PYTHON`, which `.cargo/config.toml` points at the venv), else
/// `python3`. The script needs only the standard library.
fn python() -> Result<PathBuf> {
    let candidates = std::env::var_os("FACEREC_PYTHON").map(PathBuf::from).into_iter().chain([PathBuf::from("python3")]);
    for p in candidates {
        if Command::new(&p).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
            return Ok(p);
        }
    }
    Err("no Python to run scripts/fetch_data.py: neither $FACEREC_PYTHON (.deps/venv/bin/python, made by \
         scripts/setup.sh) nor python3 runs"
        .into())
}

/// Runs a command with its output in files (no pipe to fill), killing it after [`SCRIPT_LIMIT`].
fn run_bounded(mut cmd: Command, dir: &Path) -> Result<Output> {
    let (out_path, err_path) = (dir.join("stdout.log"), dir.join("stderr.log"));
    let mut child = cmd
        .env("no_proxy", "*")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path)?)
        .stderr(fs::File::create(&err_path)?)
        .spawn()?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > SCRIPT_LIMIT {
            child.kill()?;
            child.wait()?;
            return Err(format!("{cmd:?} ran past {SCRIPT_LIMIT:?}: {}", fs::read_to_string(&err_path)?).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output { status, stdout: fs::read(out_path)?, stderr: fs::read(err_path)? })
}

/// `python fetch_data.py <args>`; returns (success, stdout, stderr).
fn fetch_data(dir: &Path, args: &[&str]) -> Result<(bool, String, String)> {
    let mut cmd = Command::new(python()?);
    cmd.arg(script()).args(args);
    let out = run_bounded(cmd, dir)?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

fn sh(dir: &Path, script: &str) -> Result<String> {
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script]).current_dir(dir);
    let out = run_bounded(cmd, dir)?;
    if !out.status.success() {
        return Err(format!("{script}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn md5(path: &Path) -> Result<String> {
    sh(path.parent().ok_or("no parent")?, &format!("md5sum '{}' | cut -c1-32", path.display()))
}

/// `tar.gz` with the given members: `("f", name, contents)` files, `("l", name, target)`
/// symlinks. Compressed and padded like a real release, so that a cut through it loses files.
fn make_archive(dir: &Path, name: &str, members: &[(&str, &str, &str)]) -> Result<PathBuf> {
    let path = dir.join(name);
    let spec: Vec<String> = members.iter().map(|(k, n, c)| format!("{k}\u{1}{n}\u{1}{c}")).collect();
    let code = "import io, sys, tarfile\n\
                with tarfile.open(sys.argv[1], 'w:gz') as t:\n\
                \x20   for spec in sys.argv[2:]:\n\
                \x20       kind, name, data = spec.split('\\x01')\n\
                \x20       info = tarfile.TarInfo(name)\n\
                \x20       if kind == 'l':\n\
                \x20           info.type, info.linkname = tarfile.SYMTYPE, data\n\
                \x20           t.addfile(info)\n\
                \x20       else:\n\
                \x20           body = data.encode()\n\
                \x20           info.size = len(body)\n\
                \x20           t.addfile(info, io.BytesIO(body))\n";
    let mut cmd = Command::new(python()?);
    cmd.arg("-c").arg(code).arg(&path).args(&spec);
    let out = run_bounded(cmd, dir)?;
    if !out.status.success() {
        return Err(format!("making {name}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(path)
}

/// A small deep-funneled-like archive: three identities, one non-image file, pseudo-random
/// (incompressible) contents so the archive is some 40 kB.
fn lfw_like_archive(dir: &Path) -> Result<PathBuf> {
    let noise = |seed: u64| -> String {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..12_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect()
    };
    let (a, b, c) = (noise(1), noise(2), noise(3));
    make_archive(
        dir,
        "lfw-deepfunneled.tgz",
        &[
            ("f", "lfw-deepfunneled/Ann_Bee/Ann_Bee_0001.jpg", &a),
            ("f", "lfw-deepfunneled/Ann_Bee/Ann_Bee_0002.jpg", &b),
            ("f", "lfw-deepfunneled/Cy_Dee/Cy_Dee_0001.jpg", &c),
            ("f", "lfw-deepfunneled/README", "not an image"),
        ],
    )
}

/// The manifest of a folder that holds `images/`, by coreutils.
fn manifest_by_sha256sum(dir: &Path) -> Result<String> {
    sh(dir, "find images -type f -name '*.jpg' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64")
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 server: one request per connection (urllib sends `Connection: close`).

#[derive(Clone, Default)]
struct Route {
    body: Vec<u8>,
    /// The first request for the whole file gets only this many bytes, then the connection drops.
    drop_first_after: Option<usize>,
    /// Answer every request with the whole file (200), as a server without range support does.
    ignore_range: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    path: String,
    range_from: Option<usize>,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(routes: HashMap<String, Route>) -> Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve(stream, &routes, &seen);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(Server { addr, seen, stop, thread: Some(thread) })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, routes: &HashMap<String, Route>, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut range_from = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range_from = value.trim().strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).and_then(|n| n.parse().ok());
            }
        }
    }
    let earlier = {
        let mut seen = seen.lock().map_err(|_| std::io::Error::other("poisoned"))?;
        let earlier = seen.iter().filter(|s| s.path == path).count();
        seen.push(Seen { path: path.clone(), range_from });
        earlier
    };
    let mut out = stream;
    let Some(route) = routes.get(&path) else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let len = route.body.len();
    match range_from.filter(|_| !route.ignore_range) {
        Some(from) if from >= len => write!(out, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(from) => {
            write!(out, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", len - 1, len - from)?;
            out.write_all(&route.body[from..])
        }
        None => {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n")?;
            match route.drop_first_after {
                Some(cut) if earlier == 0 => {
                    out.write_all(&route.body[..cut])?;
                    out.flush()?;
                    out.shutdown(Shutdown::Both)
                }
                _ => out.write_all(&route.body),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn lfw_is_downloaded_resumed_checked_and_unpacked_and_a_second_run_fetches_nothing() -> Result {
    let tmp = tempfile::tempdir()?;
    let archive = lfw_like_archive(tmp.path())?;
    let body = fs::read(&archive)?;
    let pairs = b"10\t300\nAnn_Bee\t1\t2\n".to_vec();
    fs::write(tmp.path().join("pairs.txt"), &pairs)?;
    let (archive_md5, pairs_md5) = (md5(&archive)?, md5(&tmp.path().join("pairs.txt"))?);
    // The manifest the unpacked images must have, made from a plain copy of them.
    let plain = tmp.path().join("plain");
    sh(tmp.path(), "mkdir -p plain && tar -C plain -xzf lfw-deepfunneled.tgz && mv plain/lfw-deepfunneled plain/images")?;
    let manifest = manifest_by_sha256sum(&plain)?;

    let cut = body.len() / 2;
    let server = Server::start(HashMap::from([
        ("/lfw/lfw-deepfunneled.tgz".to_owned(), Route { body: body.clone(), drop_first_after: Some(cut), ..Route::default() }),
        ("/lfw/pairs.txt".to_owned(), Route { body: pairs.clone(), ..Route::default() }),
    ]))?;
    let out = tmp.path().join("cache/lfw");
    let out_s = out.to_string_lossy().into_owned();
    let url = server.url("/lfw/");
    let args = ["lfw", &out_s, "--url", &url, "--archive-md5", &archive_md5, "--pairs-md5", &pairs_md5, "--manifest", &manifest];
    let (ok, _, err) = fetch_data(tmp.path(), &args)?;
    assert!(ok, "{err}");

    // The archive broke off at `cut` and was resumed from there.
    let archive_requests: Vec<Option<usize>> =
        server.seen().iter().filter(|s| s.path.ends_with(".tgz")).map(|s| s.range_from).collect();
    assert_eq!(archive_requests, [None, Some(cut)], "{err}");
    assert!(err.contains("resuming"), "{err}");
    for rel in ["Ann_Bee/Ann_Bee_0001.jpg", "Ann_Bee/Ann_Bee_0002.jpg", "Cy_Dee/Cy_Dee_0001.jpg"] {
        assert_eq!(fs::read(out.join("images").join(rel))?, fs::read(plain.join("images").join(rel))?, "{rel}");
    }
    assert!(!out.join("images/README").exists(), "only images are unpacked");
    assert_eq!(fs::read(out.join("pairs.txt"))?, pairs);
    assert!(!out.join("downloads/lfw-deepfunneled.tgz").exists(), "the checked archive is removed");
    assert!(!out.join("images.partial").exists());

    // A second run finds the stamp: no request, done at once.
    let before = server.seen().len();
    let start = Instant::now();
    let (ok, _, err) = fetch_data(tmp.path(), &args)?;
    assert!(ok, "{err}");
    assert_eq!(server.seen().len(), before, "a second run downloaded again");
    assert!(start.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[test]
fn a_download_left_over_from_an_earlier_run_is_resumed_with_a_range_request() -> Result {
    let tmp = tempfile::tempdir()?;
    let archive = lfw_like_archive(tmp.path())?;
    let body = fs::read(&archive)?;
    let server = Server::start(HashMap::from([("/a.tgz".to_owned(), Route { body: body.clone(), ..Route::default() })]))?;
    let dest = tmp.path().join("dl/a.tgz");
    fs::create_dir_all(tmp.path().join("dl"))?;
    let have = body.len() / 3;
    fs::write(tmp.path().join("dl/a.tgz.part"), &body[..have])?;
    let (ok, _, err) = fetch_data(tmp.path(), &["fetch", &server.url("/a.tgz"), &dest.to_string_lossy(), "--md5", &md5(&archive)?])?;
    assert!(ok, "{err}");
    assert_eq!(server.seen(), [Seen { path: "/a.tgz".into(), range_from: Some(have) }]);
    assert_eq!(fs::read(&dest)?, body);
    assert!(!tmp.path().join("dl/a.tgz.part").exists());
    Ok(())
}

#[test]
fn a_server_without_range_support_gets_a_fresh_download() -> Result {
    let tmp = tempfile::tempdir()?;
    let archive = lfw_like_archive(tmp.path())?;
    let body = fs::read(&archive)?;
    let server = Server::start(HashMap::from([("/a.tgz".to_owned(), Route { body: body.clone(), ignore_range: true, ..Route::default() })]))?;
    let dest = tmp.path().join("a.tgz.copy");
    fs::write(tmp.path().join("a.tgz.copy.part"), b"stale bytes of some other file")?;
    let (ok, _, err) = fetch_data(tmp.path(), &["fetch", &server.url("/a.tgz"), &dest.to_string_lossy(), "--md5", &md5(&archive)?])?;
    assert!(ok, "{err}");
    assert_eq!(fs::read(&dest)?, body, "the part was rewritten from the start, not appended to");
    Ok(())
}

#[test]
fn a_download_with_the_wrong_checksum_is_refused_and_removed() -> Result {
    let tmp = tempfile::tempdir()?;
    let archive = lfw_like_archive(tmp.path())?;
    let good_md5 = md5(&archive)?;
    let mut body = fs::read(&archive)?;
    body.truncate(body.len() - 100); // a truncated copy served as if whole
    let server = Server::start(HashMap::from([("/a.tgz".to_owned(), Route { body, ..Route::default() })]))?;
    let dest = tmp.path().join("a.tgz.copy");
    let (ok, _, err) = fetch_data(tmp.path(), &["fetch", &server.url("/a.tgz"), &dest.to_string_lossy(), "--md5", &good_md5])?;
    assert!(!ok, "a wrong checksum passed: {err}");
    assert!(err.contains(&format!("expected {good_md5}")) && err.contains("/a.tgz"), "{err}");
    assert!(!dest.exists() && !tmp.path().join("a.tgz.copy.part").exists(), "the bad download stayed");

    // A file put in place by hand is checked too.
    fs::write(&dest, b"not the archive")?;
    let (ok, _, err) = fetch_data(tmp.path(), &["fetch", &server.url("/a.tgz"), &dest.to_string_lossy(), "--md5", &good_md5])?;
    assert!(!ok && err.contains(&dest.display().to_string()) && err.contains(&good_md5), "{err}");
    Ok(())
}

#[test]
fn a_truncated_archive_is_refused_and_leaves_no_images() -> Result {
    let tmp = tempfile::tempdir()?;
    let archive = lfw_like_archive(tmp.path())?;
    let body = fs::read(&archive)?;
    let cut = tmp.path().join("cut.tgz");
    fs::write(&cut, &body[..body.len() * 6 / 10])?;
    let out = tmp.path().join("lfw/images");
    let (ok, _, err) = fetch_data(tmp.path(), &["extract", &cut.to_string_lossy(), &out.to_string_lossy(), "--strip", "lfw-deepfunneled"])?;
    assert!(!ok, "a truncated archive was accepted: {err}");
    assert!(err.contains("truncated or damaged"), "{err}");
    assert!(!out.exists() && !tmp.path().join("lfw/images.partial").exists(), "a partial folder stayed");
    Ok(())
}

#[test]
fn unpacked_images_must_match_the_manifest() -> Result {
    let tmp = tempfile::tempdir()?;
    let archive = lfw_like_archive(tmp.path())?;
    let out = tmp.path().join("lfw/images");
    let wrong = "0".repeat(64);
    let (ok, _, err) = fetch_data(tmp.path(), &["extract", &archive.to_string_lossy(), &out.to_string_lossy(), "--strip", "lfw-deepfunneled", "--manifest", &wrong])?;
    assert!(!ok && err.contains(&format!("expected {wrong}")) && err.contains("3 images"), "{err}");
    assert!(!out.exists(), "images that failed the manifest stayed");
    // Without a manifest to meet it prints the one it computed: the same as sha256sum's.
    let (ok, printed, err) = fetch_data(tmp.path(), &["extract", &archive.to_string_lossy(), &out.to_string_lossy(), "--strip", "lfw-deepfunneled"])?;
    assert!(ok, "{err}");
    assert_eq!(printed.trim(), manifest_by_sha256sum(&tmp.path().join("lfw"))?);
    Ok(())
}

#[test]
fn links_and_paths_that_leave_the_folder_are_refused() -> Result {
    let tmp = tempfile::tempdir()?;
    for (name, member) in [
        ("link.tgz", ("l", "lfw-deepfunneled/A/A_0001.jpg", "/etc/passwd")),
        ("escape.tgz", ("f", "lfw-deepfunneled/../../escaped.jpg", "x")),
        ("absolute.tgz", ("f", "/tmp/facerec-absolute-member.jpg", "x")),
    ] {
        let archive = make_archive(tmp.path(), name, &[("f", "lfw-deepfunneled/B/B_0001.jpg", "fine"), member])?;
        let out = tmp.path().join("x/y/images");
        let (ok, _, err) = fetch_data(tmp.path(), &["extract", &archive.to_string_lossy(), &out.to_string_lossy(), "--strip", "lfw-deepfunneled"])?;
        assert!(!ok, "{name} was unpacked: {err}");
        assert!(err.contains("not a regular file") || err.contains("unsafe path"), "{name}: {err}");
        assert!(!out.exists() && !tmp.path().join("escaped.jpg").exists() && !tmp.path().join("x/escaped.jpg").exists(), "{name}");
    }
    Ok(())
}

#[test]
fn when_nothing_can_be_downloaded_the_error_says_what_to_put_where() -> Result {
    let tmp = tempfile::tempdir()?;
    let server = Server::start(HashMap::new())?; // 404 for everything
    let out = tmp.path().join("cache/lfw");
    let (ok, _, err) = fetch_data(tmp.path(), &["lfw", &out.to_string_lossy(), "--url", &server.url("/gone/")])?;
    assert!(!ok, "{err}");
    let downloads = out.canonicalize().unwrap_or(out.clone()).join("downloads");
    for needed in [
        "HTTP 404",
        "lfw-deepfunneled.tgz  md5 68331da3eb755a505a502b5aacb3c201",
        "pairs.txt             md5 9f1ba174e4e1c508ff7cdf10ac338a7d",
        "http://vis-www.cs.umass.edu/lfw/",
        &format!("into {}/", downloads.display()),
        "scripts/setup.sh again",
        "FACEREC_DATA",
        "FACEREC_LFW_URL",
    ] {
        assert!(err.contains(needed), "the message lacks {needed:?}:\n{err}");
    }
    assert!(!out.join(".verified").exists());

    // Files put there by hand are used, with no download.
    let archive = lfw_like_archive(tmp.path())?;
    fs::create_dir_all(&downloads)?;
    fs::copy(&archive, downloads.join("lfw-deepfunneled.tgz"))?;
    fs::write(downloads.join("pairs.txt"), b"10\t300\n")?;
    let requests = server.seen().len();
    let (a, p) = (md5(&archive)?, md5(&downloads.join("pairs.txt"))?);
    let (ok, printed, err) = fetch_data(tmp.path(), &["extract", &archive.to_string_lossy(), &tmp.path().join("m/images").to_string_lossy(), "--strip", "lfw-deepfunneled"])?;
    assert!(ok, "{err}");
    let (ok, _, err) = fetch_data(tmp.path(), &["lfw", &out.to_string_lossy(), "--url", &server.url("/gone/"), "--archive-md5", &a, "--pairs-md5", &p, "--manifest", printed.trim()])?;
    assert!(ok, "{err}");
    assert_eq!(server.seen().len(), requests);
    assert!(out.join("images/Cy_Dee/Cy_Dee_0001.jpg").is_file() && out.join(".verified").is_file());
    Ok(())
}

#[test]
fn images_without_landmarks_get_the_mean_with_score_zero() -> Result {
    let tmp = tempfile::tempdir()?;
    let images = tmp.path().join("images");
    for rel in ["A/A_0001.jpg", "A/A_0002.jpg", "B/B_0001.jpg"] {
        fs::create_dir_all(images.join(rel).parent().ok_or("no parent")?)?;
        fs::write(images.join(rel), b"")?;
    }
    let header = "# image\tleft_eye_x\tleft_eye_y\tright_eye_x\tright_eye_y\tnose_x\tnose_y\tmouth_left_x\tmouth_left_y\tmouth_right_x\tmouth_right_y\tscore";
    let detected = tmp.path().join("detected.tsv");
    fs::write(
        &detected,
        format!("{header}\nA/A_0001.jpg\t100\t110\t150\t110\t125\t140\t105\t160\t145\t160\t0.99\nB/B_0001.jpg\t102\t112\t152\t112\t127\t142\t107\t162\t147\t162\t0.98\n"),
    )?;
    let out = tmp.path().join("landmarks_5pt.tsv");
    let (ok, _, err) = fetch_data(tmp.path(), &["complete-landmarks", &detected.to_string_lossy(), "--images", &images.to_string_lossy(), "--out", &out.to_string_lossy()])?;
    assert!(ok, "{err}");
    assert!(err.contains("no face found in 1 images (A/A_0002.jpg)"), "{err}");
    // The mean of the two rows, by hand: (100+102)/2 = 101, (110+112)/2 = 111, ...
    let filled = "A/A_0002.jpg\t101.0\t111.0\t151.0\t111.0\t126.0\t141.0\t106.0\t161.0\t146.0\t161.0\t0.000";
    let text = fs::read_to_string(&out)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!((lines[0], lines[2]), (header, filled), "{text}");
    // And the crate reads it.
    let file = facerec_data::landmarks::LandmarkFile::read(&out, facerec_data::landmarks::OnBad::Fail)?;
    assert_eq!(file.entries.len(), 3);
    Ok(())
}

/// The LFW copy the tests use (`data/lfw`, from `../shared/data` or downloaded) is the release
/// whose manifest `fetch_data.py` holds, with the official pairs.txt.
#[test]
fn the_lfw_copy_matches_the_checksums_the_set_up_holds() -> Result {
    let lfw = facerec_data::paths::require("lfw")?;
    let source = fs::read_to_string(script())?;
    let constant = |name: &str| -> Result<String> {
        let prefix = format!("{name} = ");
        let line = source.lines().find(|l| l.starts_with(&prefix)).ok_or(format!("no {name} in fetch_data.py"))?;
        Ok(line[prefix.len()..].trim_matches('"').to_owned())
    };
    let tmp = tempfile::tempdir()?;
    let (ok, printed, err) = fetch_data(tmp.path(), &["manifest", &lfw.join("images").to_string_lossy()])?;
    assert!(ok, "{err}");
    assert_eq!(printed.trim(), format!("{}  {} images", constant("LFW_MANIFEST")?, constant("LFW_IMAGES")?));
    assert_eq!(md5(&lfw.join("pairs.txt").canonicalize()?)?, constant("LFW_PAIRS_MD5")?);
    Ok(())
}
