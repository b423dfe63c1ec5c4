//! Starting and stopping the private test cluster.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// A running PostgreSQL cluster with `shared_preload_libraries = 'pg_trickle'`.
pub struct Cluster {
    pub port: u16,
    pub major_version: u32,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    as_postgres_user: bool,
}

/// The clusters of this test binary by their settings, started on first use.
static CLUSTERS: std::sync::Mutex<Vec<(&'static str, &'static Cluster)>> =
    std::sync::Mutex::new(Vec::new());

/// Settings of the cluster where the background scheduler is off, so that only the test's own
/// refreshes run (tests check exact refresh counts and modes).
const MANUAL: &str = "pg_trickle.enabled = off\n";

/// Settings of the cluster where the background scheduler runs, with a short cycle and room
/// for many workers.
const SCHEDULING: &str = "pg_trickle.enabled = on\npg_trickle.scheduler_interval_ms = 100\n\
                          max_worker_processes = 40\npg_trickle.max_consecutive_failures = 3\n";

/// The cluster of this test binary where refreshes are manual (the scheduler is off), started
/// on first use and stopped when the process exits.
pub fn cluster() -> &'static Cluster {
    cluster_with(MANUAL)
}

/// The cluster of this test binary where the background scheduler refreshes stream tables.
pub fn scheduling_cluster() -> &'static Cluster {
    cluster_with(SCHEDULING)
}

/// The cluster of this test binary with these extra `postgresql.conf` lines, started on first
/// use and stopped when the process exits.
pub fn cluster_with(settings: &'static str) -> &'static Cluster {
    let mut clusters = CLUSTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, cluster)) = clusters.iter().find(|(s, _)| *s == settings) {
        return cluster;
    }
    let cluster: &'static Cluster = Box::leak(Box::new(Cluster::start(settings)));
    if clusters.is_empty() {
        extern "C" fn stop_at_exit() {
            let clusters = CLUSTERS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (_, c) in clusters.iter() {
                c.stop();
            }
        }
        extern "C" {
            fn atexit(callback: extern "C" fn()) -> i32;
        }
        // SAFETY: registering a plain function with the C runtime's exit handlers.
        unsafe { atexit(stop_at_exit) };
    }
    clusters.push((settings, cluster));
    cluster
}

fn output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Cluster {
    fn start(settings: &str) -> Cluster {
        let pg_config =
            std::env::var("PGT_PG_CONFIG").unwrap_or_else(|_| "/usr/bin/pg_config".into());
        let bin_dir = PathBuf::from(output(Command::new(&pg_config).arg("--bindir")));
        let version = output(Command::new(&pg_config).arg("--version"));
        let major_version: u32 = version
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the version from {version:?}"));
        let as_postgres_user = output(Command::new("id").arg("-u")) == "0";
        // Under the temporary directory, not the checkout: the postgres OS user must be able to
        // reach the data directory, and a checkout may live where it cannot.
        let root = std::env::var("PGT_TEST_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir().join("pg_trickle-tests"));
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let data_dir = root.join(format!("pg{major_version}-{}-{serial}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).expect("create the data directory");
        let cluster = Cluster {
            port: free_port(),
            major_version,
            data_dir,
            bin_dir,
            as_postgres_user,
        };
        if as_postgres_user {
            output(
                Command::new("chown")
                    .arg("postgres:")
                    .arg(&cluster.data_dir),
            );
        }
        let data = cluster.data_dir.to_string_lossy().to_string();
        output(&mut cluster.command(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        ));
        let conf = format!(
            "\nshared_preload_libraries = 'pg_trickle'\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{data}'\nport = {}\nfsync = off\nfull_page_writes = off\n\
             synchronous_commit = off\nmax_connections = 200\nlog_min_messages = warning\n{settings}",
            cluster.port
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.data_dir.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .expect("write postgresql.conf");
        let log = format!("{data}/server.log");
        output(&mut cluster.command(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
        ));
        cluster
    }

    /// A command for one of the server's programs, run as `postgres` when we are root, and
    /// without the Rust backtrace variables (which would add backtraces to error details).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin_dir.join(program);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.args(args)
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        cmd
    }

    /// Run `pg_ctl` on this cluster with `args` (after `-D <data directory>`); whether it
    /// succeeded, and its output.
    pub fn pg_ctl(&self, args: &[&str]) -> (bool, String) {
        let data = self.data_dir.to_string_lossy().to_string();
        let log = format!("{data}/server.log");
        let mut all = vec!["-D", &data, "-l", &log];
        all.extend_from_slice(args);
        match self.command("pg_ctl", &all).output() {
            Ok(out) => (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ),
            Err(e) => (false, e.to_string()),
        }
    }

    /// Connection string for database `db`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// The server log, for failure messages.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    fn stop(&self) {
        let data = self.data_dir.to_string_lossy().to_string();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
            .output();
        if std::env::var_os("PGT_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
