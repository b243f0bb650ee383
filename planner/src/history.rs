//! The history database (SQLite, `$SINTRA_HOME/history.db`): runs, experiments, models,
//! devices, every LLM exchange (`prompts`) and the loop's events (`traces`). Migrations are
//! numbered and applied in order (`PRAGMA user_version`); the journal is WAL so `sintra history`
//! can read while a run writes.

use crate::architect::{Exchange, PastMeasurement};
use crate::experiment::Experiment;
use crate::model_info::ModelInfo;
use crate::profile::Profile;
use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use std::path::Path;

pub mod datasette;
mod fleet;
pub use fleet::{FleetDeviceRow, FleetMeasurement, FleetRow};

/// Schema migrations; index + 1 is the version each one brings the database to.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        arch TEXT NOT NULL,
        path TEXT NOT NULL,
        n_params INTEGER NOT NULL,
        file_size INTEGER NOT NULL
    );
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        profile_json TEXT NOT NULL
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        model_id INTEGER NOT NULL REFERENCES models(id),
        device_id INTEGER NOT NULL REFERENCES devices(id),
        architect TEXT NOT NULL,
        targets_json TEXT NOT NULL,
        mock INTEGER NOT NULL,
        output_dir TEXT NOT NULL,
        best_iteration INTEGER
    );
    CREATE TABLE experiments (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        iteration INTEGER NOT NULL,
        recipe TEXT NOT NULL,
        plan_key TEXT NOT NULL,
        architect TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        mock INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        bytes_per_token INTEGER NOT NULL,
        tps REAL,
        top1 REAL,
        kld REAL,
        delta_ppl REAL,
        latency_ms REAL,
        passes INTEGER NOT NULL,
        json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE(run_id, iteration)
    );
    CREATE INDEX experiments_plan ON experiments(plan_key);
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        iteration INTEGER NOT NULL,
        provider TEXT NOT NULL,
        system TEXT NOT NULL,
        user TEXT NOT NULL,
        response TEXT,
        error TEXT,
        outcome TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE traces (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        at TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    // 2: every figure with its uncertainty (issue #13): the generation speed's min-max range,
    // the standard errors of top-1 and KL divergence, the windows scored, and the device's load.
    "ALTER TABLE experiments ADD COLUMN tps_min REAL;
    ALTER TABLE experiments ADD COLUMN tps_max REAL;
    ALTER TABLE experiments ADD COLUMN tps_samples INTEGER;
    ALTER TABLE experiments ADD COLUMN top1_se REAL;
    ALTER TABLE experiments ADD COLUMN kld_se REAL;
    ALTER TABLE experiments ADD COLUMN windows INTEGER;
    ALTER TABLE experiments ADD COLUMN load_others REAL;
    ALTER TABLE experiments ADD COLUMN load_avg REAL;",
    // 3: fleets (issue #18): each device keyed by its inventory name and hardware fingerprint,
    // and every measurement on it (by `sintra bench --fleet` or a fleet run's candidates), or
    // why there is none.
    "CREATE TABLE fleet_devices (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        class TEXT NOT NULL,
        cpu_model TEXT NOT NULL,
        cores INTEGER NOT NULL,
        ram_bytes INTEGER NOT NULL,
        kernel TEXT NOT NULL,
        target TEXT NOT NULL,
        isa TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        UNIQUE(host, fingerprint)
    );
    CREATE TABLE fleet_measurements (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        device_id INTEGER REFERENCES fleet_devices(id),
        command TEXT NOT NULL,
        run_id TEXT,
        iteration INTEGER,
        model TEXT NOT NULL,
        recipe TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        tg_tps REAL,
        tg_min REAL,
        tg_max REAL,
        pp_tps REAL,
        ratio REAL,
        measured_at TEXT NOT NULL
    );
    CREATE INDEX fleet_measurements_device ON fleet_measurements(device_id);",
    // 4: files measured beside a run's candidates (`--compare`, issue #19): llama.cpp's
    // presets, say.
    "CREATE TABLE compared (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        path TEXT NOT NULL,
        label TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        tps REAL,
        top1 REAL,
        kld REAL,
        error TEXT,
        json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE(run_id, path)
    );",
];

/// One measured experiment on a device, any model (see [`History::device_measurements`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMeasurement {
    pub bytes_by_type: Vec<(String, u64)>,
    pub tps: f64,
    pub mock: bool,
}

/// An open history database.
#[derive(Debug)]
pub struct History {
    conn: Connection,
}

/// UTC timestamp, RFC 3339, seconds.
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Device, model, recipe, tokens/s, top-1, mock.
pub type BestRow = (String, String, String, f64, f64, bool);

/// One row of `sintra history`.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: String,
    pub started_at: String,
    pub status: String,
    pub model: String,
    pub device: String,
    pub architect: String,
    pub mock: bool,
    pub n_experiments: i64,
    pub best: Option<(String, f64, f64)>,
}

impl History {
    pub fn open(path: &Path) -> Result<History> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut h = History { conn };
        h.migrate()
            .with_context(|| format!("migrating {}", path.display()))?;
        Ok(h)
    }

    /// Bring the schema up to date. Several processes may open a new database at once (two
    /// runs, a reader): the version is read inside an immediate transaction, which holds the
    /// write lock, so each migration is applied by exactly one of them.
    fn migrate(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let v: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if v as usize > MIGRATIONS.len() {
            anyhow::bail!(
                "history database is version {v}, newer than this sintra knows ({}); upgrade sintra",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(v as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(())
    }

    #[cfg(test)]
    pub fn version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn model_id(&self, m: &ModelInfo) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO models (fingerprint, name, arch, path, n_params, file_size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(fingerprint) DO UPDATE SET path = excluded.path",
            params![m.fingerprint, m.name, m.arch, m.path.display().to_string(), m.n_params as i64, m.file_len as i64],
        )?;
        Ok(self.conn.query_row(
            "SELECT id FROM models WHERE fingerprint = ?1",
            [&m.fingerprint],
            |r| r.get(0),
        )?)
    }

    fn device_id(&self, p: &Profile) -> Result<i64> {
        let json = serde_json::to_string(p)?;
        self.conn.execute(
            "INSERT INTO devices (name, profile_json) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET profile_json = excluded.profile_json",
            params![p.name, json],
        )?;
        Ok(self
            .conn
            .query_row("SELECT id FROM devices WHERE name = ?1", [&p.name], |r| {
                r.get(0)
            })?)
    }

    /// Record a new run (or leave a resumed one as it is).
    pub fn start_run(
        &self,
        id: &str,
        model: &ModelInfo,
        profile: &Profile,
        architect: &str,
        targets_json: &str,
        mock: bool,
        output_dir: &str,
    ) -> Result<()> {
        let (m, d) = (self.model_id(model)?, self.device_id(profile)?);
        self.conn.execute(
            "INSERT INTO runs (id, started_at, status, model_id, device_id, architect, targets_json, mock, output_dir)
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(id) DO UPDATE SET status = 'running'",
            params![id, now(), m, d, architect, targets_json, mock, output_dir],
        )?;
        Ok(())
    }

    pub fn finish_run(&self, id: &str, status: &str, best_iteration: Option<u32>) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3, best_iteration = ?4 WHERE id = ?1",
            params![id, status, now(), best_iteration],
        )?;
        Ok(())
    }

    /// Record a file measured beside the run's candidates (replacing an earlier figure of it).
    pub fn record_compared(&self, run: &str, c: &crate::compare::Compared) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO compared (run_id, path, label, size_bytes, tps, top1, kld, error, json, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                run,
                c.path.display().to_string(),
                c.label,
                c.size_bytes as i64,
                c.tps(),
                c.top1(),
                c.kld(),
                c.error,
                serde_json::to_string(c)?,
                now(),
            ],
        )?;
        Ok(())
    }

    /// Run `f`'s writes as one transaction: all of them land, or (an error, a killed process)
    /// none.
    pub fn atomically<T>(&self, f: impl FnOnce(&History) -> Result<T>) -> Result<T> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let out = f(self)?;
        tx.commit()?;
        Ok(out)
    }

    /// Record an experiment (replacing one of the same iteration left by an interrupted run).
    pub fn record_experiment(&self, run: &str, e: &Experiment) -> Result<()> {
        let tg = e.speed.as_ref().and_then(|s| s.tg);
        let load = e.speed.as_ref().and_then(|s| s.load);
        self.conn.execute(
            "INSERT OR REPLACE INTO experiments (run_id, iteration, recipe, plan_key, architect, status, error, mock,
               size_bytes, bytes_per_token, tps, top1, kld, delta_ppl, latency_ms, passes, json, created_at,
               tps_min, tps_max, tps_samples, top1_se, kld_se, windows, load_others, load_avg)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
               ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
            params![
                run,
                e.iteration,
                e.recipe,
                e.plan_key,
                e.architect,
                e.status.as_str(),
                e.error,
                e.mock,
                e.size_bytes as i64,
                e.bytes_per_token as i64,
                e.tps(),
                e.top1(),
                e.quality.as_ref().map(|q| q.kld),
                e.quality.as_ref().map(|q| q.delta_ppl),
                e.speed.as_ref().map(|s| s.latency_ms),
                e.passes(),
                serde_json::to_string(e)?,
                now(),
                tg.map(|t| t.min),
                tg.map(|t| t.max),
                tg.map(|t| t.n),
                e.quality.as_ref().map(|q| q.top1_se),
                e.quality.as_ref().map(|q| q.kld_se),
                e.quality.as_ref().map(|q| q.windows),
                load.map(|l| l.others_cpu_share),
                load.map(|l| l.load_avg_1m),
            ],
        )?;
        Ok(())
    }

    /// Every experiment recorded for `run`, by iteration, as recorded (the `json` column): what
    /// a resumed run adopts when it was killed after recording an experiment and before its
    /// checkpoint was saved. A row this sintra cannot read (written by another version) is left
    /// out with a warning: the checkpoint stands for it, and an iteration missing from both is
    /// measured again.
    pub fn recorded_experiments(&self, run: &str) -> Result<Vec<Experiment>> {
        let mut stmt = self.conn.prepare(
            "SELECT iteration, json FROM experiments WHERE run_id = ?1 ORDER BY iteration",
        )?;
        let rows = stmt.query_map([run], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (iteration, json) = row?;
            match serde_json::from_str::<Experiment>(&json) {
                Ok(e) => out.push(e),
                Err(err) => tracing::warn!(
                    run,
                    iteration,
                    error = %err,
                    "the history's record of this experiment does not parse: left to the checkpoint"
                ),
            }
        }
        Ok(out)
    }

    pub fn record_exchange(&self, run: &str, iteration: u32, x: &Exchange) -> Result<()> {
        self.conn.execute(
            "INSERT INTO prompts (run_id, iteration, provider, system, user, response, error, outcome, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![run, iteration, x.provider, x.system, x.user, x.response, x.error, x.outcome, now()],
        )?;
        Ok(())
    }

    pub fn trace(&self, run: &str, event: &str, detail: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO traces (run_id, at, event, detail) VALUES (?1, ?2, ?3, ?4)",
            params![run, now(), event, detail],
        )?;
        Ok(())
    }

    /// Measurements from other runs on this device and model, for the cost model.
    pub fn past_measurements(
        &self,
        model: &ModelInfo,
        profile: &Profile,
        except_run: &str,
    ) -> Result<Vec<PastMeasurement>> {
        let mut st = self.conn.prepare(
            "SELECT e.plan_key, e.bytes_per_token, e.tps, e.top1, e.mock FROM experiments e
             JOIN runs r ON r.id = e.run_id JOIN models m ON m.id = r.model_id JOIN devices d ON d.id = r.device_id
             WHERE m.fingerprint = ?1 AND d.name = ?2 AND r.id != ?3 AND e.status = 'ok' AND e.tps IS NOT NULL AND e.top1 IS NOT NULL",
        )?;
        let rows = st.query_map(params![model.fingerprint, profile.name, except_run], |r| {
            Ok(PastMeasurement {
                plan_key: r.get(0)?,
                bytes_per_token: r.get::<_, i64>(1)? as u64,
                tps: r.get(2)?,
                top1: r.get(3)?,
                mock: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Measurements of every model on the device `profile` names, from runs other than
    /// `except_run`: each measured experiment's bytes read per token by weight type (its total
    /// alone, as `"?"`, for experiments recorded before types were) and its tokens/s. What a
    /// cost per byte is learnt from before a new model is downloaded.
    pub fn device_measurements(
        &self,
        profile: &Profile,
        except_run: &str,
    ) -> Result<Vec<DeviceMeasurement>> {
        let mut st = self.conn.prepare(
            "SELECT e.json, e.bytes_per_token, e.tps, e.mock FROM experiments e
             JOIN runs r ON r.id = e.run_id JOIN devices d ON d.id = r.device_id
             WHERE d.name = ?1 AND r.id != ?2 AND e.status = 'ok' AND e.tps IS NOT NULL",
        )?;
        let rows = st.query_map(params![profile.name, except_run], |r| {
            let json: String = r.get(0)?;
            let total = r.get::<_, i64>(1)? as u64;
            let by_type = serde_json::from_str::<Experiment>(&json)
                .ok()
                .map(|e| e.bytes_by_type)
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| vec![("?".to_string(), total)]);
            Ok(DeviceMeasurement {
                bytes_by_type: by_type,
                tps: r.get(2)?,
                mock: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRow>> {
        let mut st = self.conn.prepare(
            "SELECT r.id, r.started_at, r.status, m.name, d.name, r.architect, r.mock,
               (SELECT COUNT(*) FROM experiments e WHERE e.run_id = r.id),
               (SELECT e.recipe || char(31) || e.tps || char(31) || e.top1 FROM experiments e
                  WHERE e.run_id = r.id AND e.iteration = r.best_iteration)
             FROM runs r JOIN models m ON m.id = r.model_id JOIN devices d ON d.id = r.device_id
             ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            let best: Option<String> = r.get(8)?;
            Ok(RunRow {
                id: r.get(0)?,
                started_at: r.get(1)?,
                status: r.get(2)?,
                model: r.get(3)?,
                device: r.get(4)?,
                architect: r.get(5)?,
                mock: r.get(6)?,
                n_experiments: r.get(7)?,
                best: best.and_then(|b| {
                    let mut it = b.split('\u{1f}');
                    let recipe = it.next()?.to_string();
                    let tps = it.next()?.parse().ok()?;
                    let top1 = it.next()?.parse().ok()?;
                    Some((recipe, tps, top1))
                }),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The best passing recipe per device and model (most accurate, then fastest), with
    /// whether it was mock.
    pub fn best_per_device_model(&self) -> Result<Vec<BestRow>> {
        let mut st = self.conn.prepare(
            "SELECT d.name, m.name, e.recipe, e.tps, e.top1, e.mock FROM experiments e
             JOIN runs r ON r.id = e.run_id JOIN models m ON m.id = r.model_id JOIN devices d ON d.id = r.device_id
             WHERE e.passes = 1
             ORDER BY d.name, m.name, e.mock, e.top1 DESC, e.tps DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        let mut out: Vec<BestRow> = Vec::new();
        for row in rows {
            let row = row?;
            if !out
                .iter()
                .any(|o| o.0 == row.0 && o.1 == row.1 && o.5 == row.5)
            {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Rows of a table for a run (tests).
    #[cfg(test)]
    pub fn count(&self, table: &str, run: &str) -> Result<i64> {
        let sql = match table {
            "prompts" => "SELECT COUNT(*) FROM prompts WHERE run_id = ?1",
            "experiments" => "SELECT COUNT(*) FROM experiments WHERE run_id = ?1",
            "traces" => "SELECT COUNT(*) FROM traces WHERE run_id = ?1",
            other => anyhow::bail!("no table '{other}'"),
        };
        Ok(self.conn.query_row(sql, [run], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_timestamps_look_right() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.db");
        let h = History::open(&p).unwrap();
        assert_eq!(h.version().unwrap(), MIGRATIONS.len() as i64);
        drop(h);
        let h = History::open(&p).unwrap();
        assert_eq!(h.version().unwrap(), MIGRATIONS.len() as i64);
        let t = now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20"), "{t}");
    }

    #[test]
    fn records_runs_experiments_prompts_and_traces() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.db")).unwrap();
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let profile = Profile::load("rpi4").unwrap();
        h.start_run("r1", &model, &profile, "heuristic", "{}", true, "out/r1")
            .unwrap();
        let mut e = crate::experiment::tests::exp(1, 20.0, 0.95, true);
        h.record_experiment("r1", &e).unwrap();
        e.label = "again".into();
        h.record_experiment("r1", &e).unwrap(); // a redone iteration replaces its row
        h.record_exchange(
            "r1",
            1,
            &Exchange {
                provider: "p".into(),
                system: "s".into(),
                user: "u".into(),
                response: Some("{}".into()),
                error: None,
                outcome: "accepted".into(),
            },
        )
        .unwrap();
        h.trace("r1", "proposed", "x").unwrap();
        // What a resumed run adopts: the experiment as recorded, to the last field.
        assert_eq!(h.recorded_experiments("r1").unwrap(), [e.clone()]);
        assert!(h.recorded_experiments("r2").unwrap().is_empty());
        // A record another version wrote, unreadable here, is left out, not an error.
        h.conn
            .execute(
                "INSERT INTO experiments (run_id, iteration, recipe, plan_key, architect, status, mock, size_bytes, bytes_per_token, passes, json, created_at)
                 VALUES ('r1', 9, '{}', 'k', 'a', 'ok', 1, 0, 0, 0, '{\"iteration\": \"one\"}', 'now')",
                [],
            )
            .unwrap();
        assert_eq!(h.recorded_experiments("r1").unwrap(), [e.clone()]);
        h.conn
            .execute("DELETE FROM experiments WHERE iteration = 9", [])
            .unwrap();
        // A failed transaction leaves nothing of its writes.
        let second = crate::experiment::tests::exp(2, 30.0, 0.9, true);
        let failed: Result<()> = h.atomically(|h| {
            h.record_experiment("r1", &second)?;
            anyhow::bail!("killed in between")
        });
        assert!(failed.is_err());
        assert_eq!(h.recorded_experiments("r1").unwrap().len(), 1);
        h.atomically(|h| h.record_experiment("r1", &second))
            .unwrap();
        assert_eq!(h.recorded_experiments("r1").unwrap()[1], second);
        h.finish_run("r1", "met", Some(1)).unwrap();
        assert_eq!(h.count("experiments", "r1").unwrap(), 2);
        assert_eq!(h.count("prompts", "r1").unwrap(), 1);
        assert_eq!(h.count("traces", "r1").unwrap(), 1);
        let runs = h.runs(10).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].best.as_ref().unwrap().1, 20.0);
        assert_eq!(h.best_per_device_model().unwrap().len(), 1);
        // A second run on the same device and model sees the first one's measurements.
        assert_eq!(
            h.past_measurements(&model, &profile, "r2").unwrap().len(),
            2
        );
        assert!(h
            .past_measurements(&model, &profile, "r1")
            .unwrap()
            .is_empty());
    }
}
