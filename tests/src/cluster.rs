//! Starting and stopping the private test cluster.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A running PostgreSQL cluster with `shared_preload_libraries = 'pg_trickle'`.
pub struct Cluster {
    pub port: u16,
    pub major_version: u32,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    as_postgres_user: bool,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster of this test binary, started on first use and stopped when the process exits.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::start();
        extern "C" fn stop_at_exit() {
            if let Some(c) = CLUSTER.get() {
                c.stop();
            }
        }
        extern "C" {
            fn atexit(callback: extern "C" fn()) -> i32;
        }
        // SAFETY: registering a plain function with the C runtime's exit handlers.
        unsafe { atexit(stop_at_exit) };
        cluster
    })
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
    fn start() -> Cluster {
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
        let data_dir = root.join(format!("pg{major_version}-{}", std::process::id()));
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
             synchronous_commit = off\nmax_connections = 200\nlog_min_messages = warning\n",
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
