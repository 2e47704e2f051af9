//! One etcd member process: its ports, directories, command line and signals.
//!
//! Members are stopped with SIGKILL only: it works on stopped (SIGSTOPped) processes too, and
//! unlike a SIGTERM to every member at once it does not make the leader linger for seconds.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::error::ClusterError;

/// How long a synchronous stop waits for a SIGKILLed process to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Static description of a member plus its current process.
#[derive(Debug)]
pub(crate) struct Member {
    pub name: String,
    /// The etcd data dir (created by etcd inside the cluster's temp dir).
    pub data_dir: PathBuf,
    /// stdout and stderr of every run of this member, appended.
    pub log_path: PathBuf,
    /// The client port etcd listens on.
    pub client_port: u16,
    /// The peer port etcd listens on.
    pub peer_port: u16,
    /// The peer port other members dial: the peer proxy in front of `peer_port`.
    pub peer_proxy_port: u16,
    /// The port of the client proxy in front of `client_port`, if enabled.
    pub client_proxy_port: Option<u16>,
    /// `https` when the cluster speaks TLS to clients, else `http`.
    pub scheme: &'static str,
    /// For a member joining a running cluster: its `--initial-cluster` (with
    /// `--initial-cluster-state existing`), set when it is first started.
    pub join: Mutex<Option<String>>,
    child: Mutex<Option<Child>>,
}

/// The flags every member of a cluster shares.
#[derive(Debug, Clone)]
pub(crate) struct CommonFlags {
    pub bin: String,
    pub initial_cluster: String,
    pub token: String,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub pre_vote: bool,
    pub extra_args: Vec<String>,
    /// Certificates of a TLS cluster: client ports speak TLS and demand client certificates.
    pub tls: Option<super::pki::TestPki>,
}

impl Member {
    pub(crate) fn new(
        name: String,
        root: &std::path::Path,
        client_port: u16,
        peer_port: u16,
        peer_proxy_port: u16,
        client_proxy_port: Option<u16>,
        scheme: &'static str,
    ) -> Self {
        Member {
            data_dir: root.join(format!("{name}.etcd")),
            log_path: root.join(format!("{name}.log")),
            name,
            client_port,
            peer_port,
            peer_proxy_port,
            client_proxy_port,
            scheme,
            join: Mutex::new(None),
            child: Mutex::new(None),
        }
    }

    /// The member's own client URL.
    pub(crate) fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
    }

    /// The peer URL other members dial (through the peer proxy).
    pub(crate) fn advertised_peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_proxy_port)
    }

    /// Starts etcd for this member; the data dir is reused if it exists.
    pub(crate) fn spawn(&self, flags: &CommonFlags) -> Result<u32, ClusterError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| ClusterError::io(format!("open {}", self.log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| ClusterError::io("clone log file handle", e))?;
        let client_url = self.client_url();
        let join = self.join.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (initial_cluster, state) = match &join {
            Some(initial) => (initial.as_str(), "existing"),
            None => (flags.initial_cluster.as_str(), "new"),
        };
        let mut command = Command::new(&flags.bin);
        if let Some(pki) = &flags.tls {
            command
                .arg("--cert-file")
                .arg(pki.server_cert_file())
                .arg("--key-file")
                .arg(pki.server_key_file())
                .arg("--trusted-ca-file")
                .arg(pki.ca_file())
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer_port),
            ])
            .args(["--initial-advertise-peer-urls", &self.advertised_peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &flags.token])
            .args(["--heartbeat-interval", &flags.heartbeat_ms.to_string()])
            .args(["--election-timeout", &flags.election_ms.to_string()])
            .arg(format!("--pre-vote={}", flags.pre_vote))
            .args(["--logger=zap", "--log-outputs=stderr"])
            .args(&flags.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                member: self.name.clone(),
                bin: flags.bin.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        *self.lock() = Some(child);
        Ok(pid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        // A panic while holding this lock leaves a valid Option behind: keep going.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running process id, if the member has not been killed.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.lock().as_ref().and_then(|c| c.id())
    }

    /// SIGKILLs the process and reaps it, waiting at most a few seconds. Never hangs.
    pub(crate) fn kill(&self) {
        let Some(mut child) = self.lock().take() else {
            return;
        };
        let _ = child.start_kill();
        let deadline = Instant::now() + REAP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                _ => return,
            }
        }
        // Still not reaped: dropping `child` hands it to tokio's orphan reaper.
    }

    /// Sends a signal to the running process, if any.
    pub(crate) fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// `Some(status)` if the process has exited on its own.
    pub(crate) fn exited(&self) -> Option<String> {
        let mut guard = self.lock();
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// The last `lines` lines of the member's log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the log says a bind failed because the port was taken.
    pub(crate) fn port_clash(&self) -> bool {
        std::fs::read_to_string(&self.log_path).is_ok_and(|t| t.contains("address already in use"))
    }
}
