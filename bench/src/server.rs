//! Server processes started by `compare`: spawning with a log file, waiting until they answer, reading their
//! memory from `/proc`, and stopping them by pid (SIGTERM, then SIGKILL after a grace period).

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::process::{Child, Command};

use crate::{BenchError, Result};

/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The pids of the servers currently running, mirrored into a file so that a wrapper script can stop them
/// if this process dies without cleaning up.
#[derive(Debug, Clone, Default)]
pub struct PidFile {
    path: Option<PathBuf>,
    pids: Arc<Mutex<BTreeSet<u32>>>,
}

impl PidFile {
    /// Mirrors into `path` (if given).
    pub fn new(path: Option<PathBuf>) -> Self {
        PidFile {
            path,
            pids: Arc::default(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut BTreeSet<u32>)) {
        let mut pids = self.pids.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut pids);
        if let Some(path) = &self.path {
            let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
            let _ = std::fs::write(path, text);
        }
    }
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now, KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident, KiB.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of a process.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`, in seconds. Assumes the usual
/// Linux clock tick of 100 Hz (`getconf CLK_TCK`), so the resolution is 10 ms.
pub fn cpu_secs_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces, hence the last ')'): state is the first,
    // utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS)
}

/// Clock ticks per second of `/proc/PID/stat` times.
const CLOCK_TICKS: f64 = 100.0;

/// A running server process.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    pids: PidFile,
}

impl ServerProcess {
    /// Starts `program args…` with stdout and stderr going to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        pids: &PidFile,
    ) -> Result<ServerProcess> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                BenchError::Process(format!("cannot start {name} ({}): {e}", program.display()))
            })?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Process(format!("{name} exited at once")))?;
        pids.update(|p| {
            p.insert(pid);
        });
        Ok(ServerProcess {
            name: name.to_string(),
            child,
            pid,
            log: log.to_path_buf(),
            pids: pids.clone(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its memory now.
    pub fn memory(&self) -> Option<Memory> {
        memory_of(self.pid)
    }

    /// CPU seconds it has used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs_of(self.pid)
    }

    /// Fails (with the end of its log) if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(BenchError::Process(format!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            ))),
        }
    }

    /// Waits until the process accepts TCP connections on `addr`.
    pub async fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!(
                    "{} not listening on {addr} after {timeout:?}; end of log:\n{}",
                    self.name,
                    log_tail(&self.log)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL if it has not exited within a grace period.
    pub async fn stop(mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if tokio::time::timeout(STOP_GRACE, self.child.wait())
                .await
                .is_err()
            {
                self.child.kill().await?;
            }
        }
        self.pids.update(|p| {
            p.remove(&self.pid);
        });
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // `kill_on_drop` takes the process down if `stop` was never reached (error or interruption).
        self.pids.update(|p| {
            p.remove(&self.pid);
        });
    }
}

/// The last lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Resolves on SIGINT or SIGTERM (so that `compare` can stop its servers before exiting).
pub async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory() {
        let m = memory_of(std::process::id()).expect("/proc is readable");
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib, "{m:?}");
        let before = cpu_secs_of(std::process::id()).expect("/proc/PID/stat is readable");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let after = cpu_secs_of(std::process::id()).expect("readable");
        assert!(
            after > before,
            "100 ms of spinning must show ({before} -> {after}, {x})"
        );
    }
}
