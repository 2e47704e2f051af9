//! One etcd member process: its ports, directories, command line and signals.
//!
//! Members are stopped with SIGKILL only: it works on stopped (SIGSTOPped) processes too, and
//! unlike a SIGTERM to every member at once it does not make the leader linger for seconds.
//!
//! Each member is started through [`LAUNCHER`], a few lines of `/bin/sh` that leave a watcher
//! behind and then `exec` etcd, so that a member dies with the process that started it (see
//! the module doc of [`testing`](super), "Members die with their test process").

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::error::ClusterError;

/// How long a synchronous stop waits for a SIGKILLed process to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The shell that starts etcd, with `$1` the cluster directory, `$2` the etcd binary and the
/// rest etcd's arguments; its standard input is a pipe whose other end only the fixture holds.
///
/// It forks a watcher and then `exec`s etcd, so etcd keeps the pid the fixture spawned: the
/// fixture signals, waits for and reaps etcd itself, and the watcher is etcd's child. The
/// watcher ignores SIGINT, SIGTERM and SIGHUP (a Ctrl-C or a CI's SIGTERM to the whole process
/// group must not take it first) and blocks reading the pipe:
/// - a line ([`RELEASE`]) is the fixture letting go of a member it has killed and reaped: the
///   watcher exits;
/// - end of file without one is the fixture's death, however it died (the kernel closes its
///   descriptors). The watcher waits until etcd has lost its parent and SIGKILLs it, or, if etcd
///   is already gone, until the fixture is dead; then it waits for etcd to be gone and removes
///   the cluster directory, which no destructor will remove now. If neither happens within 2 s
///   the fixture is alive after all and the watcher leaves everything alone.
///
/// The pid it kills is that of its own parent, checked just before, so a reused pid is never
/// signalled.
const LAUNCHER: &str = r#"
cluster_dir=$1 etcd=$2
shift 2
fixture=$PPID member=$$
exec 3<&0
(
  trap '' INT TERM HUP
  exec </dev/null
  status_of() {
    st= pp=
    while read -r k v _; do
      case $k in State:) st=$v ;; PPid:) pp=$v ;; esac
    done <"/proc/$1/status"
  } 2>/dev/null
  read -r _ <&3 && exit 0
  exec 3<&-
  n=0
  while :; do
    status_of "$member"; member_parent=$pp
    status_of self
    if [ "$pp" = "$member" ]; then
      if [ "$member_parent" != "$fixture" ]; then kill -KILL "$member"; break; fi
    else
      status_of "$fixture"
      if [ -z "$st" ] || [ "$st" = Z ]; then break; fi
    fi
    n=$((n + 1)); [ "$n" -lt 40 ] || exit 0
    sleep 0.05
  done
  n=0
  while status_of self; [ "$pp" = "$member" ] && [ "$n" -lt 100 ]; do
    n=$((n + 1)); sleep 0.05
  done
  rm -rf -- "$cluster_dir"
) &
exec "$etcd" "$@" </dev/null 3<&-
"#;

/// What the fixture writes to a member's launcher pipe once it has killed and reaped it.
const RELEASE: &[u8] = b"released\n";

/// Static description of a member plus its current process.
#[derive(Debug)]
pub(crate) struct Member {
    pub name: String,
    /// The cluster's temp dir, which the launcher's watcher removes if the fixture dies.
    pub cluster_dir: PathBuf,
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
            cluster_dir: root.to_path_buf(),
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
        let spawn_error = |bin: String, source| ClusterError::Spawn {
            member: self.name.clone(),
            bin,
            source,
        };
        let join = self.join.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (initial_cluster, state) = match &join {
            Some(initial) => (initial.as_str(), "existing"),
            None => (flags.initial_cluster.as_str(), "new"),
        };
        let etcd = resolve_bin(&flags.bin).map_err(|e| spawn_error(flags.bin.clone(), e))?;
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(LAUNCHER)
            .arg("etcd-health-member")
            .arg(&self.cluster_dir)
            .arg(&etcd);
        if let Some(pki) = &flags.tls {
            command
                .arg("--cert-file")
                .arg(pki.server_cert_file())
                .arg("--key-file")
                .arg(pki.server_key_file())
                .arg("--trusted-ca-file")
                .arg(pki.trusted_ca_file())
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
            // The launcher's watcher reads this pipe: a line when the fixture lets go of the
            // member, end of file when the fixture dies.
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_error(format!("/bin/sh (launching {})", etcd.display()), e))?;
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
                _ => break,
            }
        }
        // Still not reaped: dropping `child` hands it to tokio's orphan reaper.
        release_watcher(&child);
    }

    /// SIGTERMs the process (etcd stops gracefully: its gRPC server sends `GOAWAY` and
    /// finishes the requests it took) and reaps it; SIGKILLs it if it has not exited within
    /// `timeout`.
    pub(crate) async fn stop(&self, timeout: Duration) {
        let Some(mut child) = self.lock().take() else {
            return;
        };
        // First: waiting closes the child's stdin, which the watcher must not take for a
        // fixture gone.
        release_watcher(&child);
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(timeout, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
        }
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

/// Tells the launcher's watcher that the fixture let go of this member on purpose (see
/// [`LAUNCHER`]). The pipe is empty and non-blocking, so the write cannot block; if it fails,
/// the watcher sees end of file with the fixture alive and leaves everything alone.
fn release_watcher(child: &Child) {
    let Some(stdin) = &child.stdin else { return };
    if let Ok(fd) = stdin.as_fd().try_clone_to_owned() {
        let _ = std::fs::File::from(fd).write_all(RELEASE);
    }
}

/// The etcd binary when neither the builder nor `$ETCD_BIN` names one: `etcd` on `PATH`, else
/// Debian's `/usr/bin/etcd` (which a spawn error will then name).
pub(crate) fn default_etcd_bin() -> String {
    resolve_bin("etcd").map_or_else(
        |_| "/usr/bin/etcd".to_string(),
        |path| path.display().to_string(),
    )
}

/// The path `bin` names: itself if it has a `/`, else the first executable `bin` on `PATH`.
///
/// Checked before the launcher runs so that a missing binary is a spawn error, as if etcd had
/// been started directly, rather than a shell's complaint in the member's log.
fn resolve_bin(bin: &str) -> std::io::Result<PathBuf> {
    let executable = |path: &Path| {
        std::fs::metadata(path).and_then(|m| {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "not an executable file",
                ))
            }
        })
    };
    if bin.contains('/') {
        let path = PathBuf::from(bin);
        return executable(&path).map(|()| path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(bin))
        .find(|path| executable(path).is_ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not found on PATH"))
}
