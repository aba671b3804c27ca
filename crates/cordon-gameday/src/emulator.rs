//! The local AWS emulator a Game Day runs against by default: the pinned
//! moto server (`.venv/bin/moto_server`, installed by `scripts/setup`),
//! started on 127.0.0.1 on a free port and stopped when the Game Day ends.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::GamedayError;

/// How long moto gets to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh ports tried when another process takes the one picked first.
const START_ATTEMPTS: usize = 3;

/// A running moto server, stopped (killed and reaped) when dropped.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    port: u16,
}

/// The emulator installed in the repository that holds `dir`: the first
/// `.venv/bin/moto_server` found in `dir` or one of its parents.
pub fn find_moto_server(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(".venv/bin/moto_server"))
        .find(|p| p.is_file())
}

impl Emulator {
    /// Starts `program` (moto_server) on 127.0.0.1 and waits until it
    /// answers; its output goes to `log`.
    pub async fn start(program: PathBuf, log: PathBuf) -> Result<Emulator, GamedayError> {
        tokio::task::spawn_blocking(move || Emulator::start_blocking(&program, &log))
            .await
            .map_err(|e| GamedayError::Emulator {
                program: "moto_server".to_string(),
                reason: e.to_string(),
            })?
    }

    fn start_blocking(program: &Path, log: &Path) -> Result<Emulator, GamedayError> {
        let failed = |reason: String| GamedayError::Emulator {
            program: program.display().to_string(),
            reason,
        };
        if !program.is_file() {
            return Err(failed("it does not exist".to_string()));
        }
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port().map_err(|e| failed(e.to_string()))?;
            let out = std::fs::File::create(log).map_err(|e| failed(e.to_string()))?;
            let err = out.try_clone().map_err(|e| failed(e.to_string()))?;
            let child = Command::new(program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| failed(e.to_string()))?;
            let mut emulator = Emulator { child, port };
            match emulator.wait_ready() {
                Ok(()) => return Ok(emulator),
                Err(reason) => last = reason,
            }
        }
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        Err(failed(format!(
            "{last}; its log ends: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited ({status})"));
            }
            if answers(self.port) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!("no answer within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Our own child, by its handle: never anyone else's process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Whether moto answers `GET /moto-api/` on 127.0.0.1:`port`.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}
