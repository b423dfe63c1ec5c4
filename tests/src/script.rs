//! A record of every statement a randomised test runs, so that an oracle mismatch can be
//! reported as a self-contained SQL script: replayed on a database with pg_trickle installed,
//! it recreates the schema, the stream tables and every change, and ends at the mismatch.

use crate::oracle::oracle_mismatch;
use postgres::Client;

#[derive(Default)]
pub struct Script {
    statements: Vec<String>,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Run `sql` (one or more statements) and record it.
    pub fn run(&mut self, client: &mut Client, sql: &str) {
        self.statements
            .push(sql.trim_end().trim_end_matches(';').to_string());
        if let Err(e) = client.batch_execute(sql) {
            let message = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            panic!(
                "statement failed: {message}\n-- reproduction script:\n{}",
                self.text()
            );
        }
    }

    /// Check `stream_table` against `query`; on a mismatch, panic with the whole script.
    pub fn check(&self, client: &mut Client, stream_table: &str, query: &str) {
        if let Some(report) = oracle_mismatch(client, stream_table, query) {
            panic!(
                "{report}\n-- reproduction script (run it in a database with pg_trickle installed):\n{}\n-- then:\n{query};\nSELECT * FROM {stream_table};",
                self.text()
            );
        }
    }

    /// The recorded statements, one per line group, each ending with a semicolon.
    pub fn text(&self) -> String {
        self.statements.iter().map(|s| format!("{s};\n")).collect()
    }
}

/// The seed of a randomised test: `PGT_SEED` when set, else `default`; printed, so that a
/// failing run can be repeated.
pub fn seed(default: u64) -> u64 {
    let seed = std::env::var("PGT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    println!("seed {seed} (set PGT_SEED to reproduce)");
    seed
}

#[cfg(test)]
mod tests {
    use super::Script;

    #[test]
    fn statements_are_terminated_once() {
        let mut script = Script::new();
        script.statements.push("SELECT 1".into());
        script.statements.push("INSERT INTO t VALUES (1)".into());
        assert_eq!(script.text(), "SELECT 1;\nINSERT INTO t VALUES (1);\n");
    }
}
