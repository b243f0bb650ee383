//! What the dashboard reads from `history.db`, opened read-only for every request: the
//! dashboard cannot write the database, by the flags SQLite is given and by `query_only`. A
//! database that does not exist yet is not created (the first run creates it).

use crate::experiment::Experiment;
use crate::targets::Targets;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;

/// One run, as its page's heading and the runs list show it.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub model: String,
    pub model_path: String,
    pub device: String,
    pub architect: String,
    pub mock: bool,
    pub targets: Option<Targets>,
    pub output_dir: String,
    pub n_experiments: i64,
}

/// A run with its experiments; rows whose JSON this sintra cannot read are named in
/// `unreadable` instead of being dropped silently.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run: Run,
    pub experiments: Vec<Experiment>,
    pub unreadable: Vec<(u32, String)>,
    /// The files measured beside the run's candidates (`--compare`); read for one run only.
    pub compared: Vec<crate::compare::Compared>,
}

/// `None` when the database does not exist yet.
pub fn open(path: &Path) -> Result<Option<Connection>> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    // Created, but its first writer has not made the tables yet.
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if v == 0 {
        return Ok(None);
    }
    Ok(Some(conn))
}

const RUN_COLUMNS: &str = "r.id, r.started_at, r.finished_at, r.status, m.name, m.path, d.name,
    r.architect, r.mock, r.targets_json, r.output_dir,
    (SELECT COUNT(*) FROM experiments e WHERE e.run_id = r.id)
    FROM runs r JOIN models m ON m.id = r.model_id JOIN devices d ON d.id = r.device_id";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let targets: String = r.get(9)?;
    Ok(Run {
        id: r.get(0)?,
        started_at: r.get(1)?,
        finished_at: r.get(2)?,
        status: r.get(3)?,
        model: r.get(4)?,
        model_path: r.get(5)?,
        device: r.get(6)?,
        architect: r.get(7)?,
        mock: r.get(8)?,
        targets: serde_json::from_str(&targets).ok(),
        output_dir: r.get(10)?,
        n_experiments: r.get(11)?,
    })
}

/// Runs, newest first, with each one's experiments (for the best figures).
pub fn runs(conn: &Connection, limit: usize) -> Result<Vec<RunDetail>> {
    let mut st = conn.prepare(&format!(
        "SELECT {RUN_COLUMNS} ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?1"
    ))?;
    let runs = st
        .query_map([limit as i64], run_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    runs.into_iter()
        .map(|run| {
            let (experiments, unreadable) = experiments(conn, &run.id)?;
            Ok(RunDetail {
                run,
                experiments,
                unreadable,
                compared: Vec::new(),
            })
        })
        .collect()
}

/// One run, or `None` when there is no run of that id.
pub fn run(conn: &Connection, id: &str) -> Result<Option<RunDetail>> {
    let run = conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS} WHERE r.id = ?1"),
            [id],
            run_row,
        )
        .optional()?;
    let Some(run) = run else {
        return Ok(None);
    };
    let (experiments, unreadable) = experiments(conn, id)?;
    Ok(Some(RunDetail {
        run,
        experiments,
        unreadable,
        compared: compared(conn, id)?,
    }))
}

/// A run's `--compare` files; none in a database made before they were kept (no table).
fn compared(conn: &Connection, run: &str) -> Result<Vec<crate::compare::Compared>> {
    let has_table: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'compared'",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(Vec::new());
    }
    let mut st = conn.prepare("SELECT json FROM compared WHERE run_id = ?1 ORDER BY id")?;
    let rows = st
        .query_map([run], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // A row this sintra cannot read is left out of the plots, not an error for the page.
    Ok(rows
        .iter()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect())
}

type Experiments = (Vec<Experiment>, Vec<(u32, String)>);

fn experiments(conn: &Connection, run: &str) -> Result<Experiments> {
    let mut st = conn
        .prepare("SELECT iteration, json FROM experiments WHERE run_id = ?1 ORDER BY iteration")?;
    let rows = st
        .query_map([run], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (i, json) in rows {
        match serde_json::from_str::<Experiment>(&json) {
            Ok(e) => ok.push(e),
            Err(e) => bad.push((i, e.to_string())),
        }
    }
    Ok((ok, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_database_is_not_created_and_writes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        assert!(open(&path).unwrap().is_none());
        assert!(!path.exists());
        drop(crate::history::History::open(&path).unwrap());
        let conn = open(&path).unwrap().unwrap();
        assert!(runs(&conn, 10).unwrap().is_empty());
        assert!(run(&conn, "nope").unwrap().is_none());
        let err = conn
            .execute("DELETE FROM runs", [])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("readonly") || err.contains("read-only"),
            "{err}"
        );
    }
}
