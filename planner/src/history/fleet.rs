//! Fleet devices and their measurements (issue #18): a device is its inventory name and its
//! hardware fingerprint ([`crate::fleet::hardware::Hardware`]); a measurement is one model or
//! candidate on it, from `sintra bench --fleet` or a fleet run, or the reason it has none.

use super::{now, History};
use crate::fleet::hardware::Hardware;
use anyhow::Result;
use rusqlite::params;

/// One measurement (or its absence) to record.
#[derive(Debug, Clone, Default)]
pub struct FleetMeasurement {
    pub host: String,
    /// `bench` or `optimize`.
    pub command: String,
    pub run_id: Option<String>,
    pub iteration: Option<u32>,
    /// The model's name (and, for a candidate, its recipe's label; the model's file name for
    /// `sintra bench`).
    pub model: String,
    pub recipe: String,
    /// `ok`, `unreachable`, `lost`, `timed out`, `failed`.
    pub status: String,
    pub error: Option<String>,
    pub tg_tps: Option<f64>,
    pub tg_min: Option<f64>,
    pub tg_max: Option<f64>,
    pub pp_tps: Option<f64>,
    /// The candidate's speed over the original's in the same rounds on this device.
    pub ratio: Option<f64>,
}

/// A row of `sintra history --fleet`'s device table.
#[derive(Debug, Clone)]
pub struct FleetDeviceRow {
    pub host: String,
    pub fingerprint: String,
    pub class: String,
    pub hardware: Hardware,
    pub first_seen: String,
    pub last_seen: String,
    pub measurements: i64,
}

/// A measurement as read back: its device's host and fingerprint (none when it was never
/// reached), and what was measured.
#[derive(Debug, Clone)]
pub struct FleetRow {
    pub host: String,
    pub fingerprint: Option<String>,
    pub cpu_model: Option<String>,
    pub command: String,
    pub run_id: Option<String>,
    pub iteration: Option<u32>,
    pub model: String,
    pub recipe: String,
    pub status: String,
    pub error: Option<String>,
    pub tg_tps: Option<f64>,
    pub tg_min: Option<f64>,
    pub tg_max: Option<f64>,
    pub ratio: Option<f64>,
    pub measured_at: String,
}

impl History {
    /// The device `host` with this hardware: recorded the first time, seen again after.
    pub fn fleet_device(&self, host: &str, class: &str, hw: &Hardware) -> Result<i64> {
        let t = now();
        self.conn.execute(
            "INSERT INTO fleet_devices (host, fingerprint, class, cpu_model, cores, ram_bytes, kernel, target, isa, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
             ON CONFLICT(host, fingerprint) DO UPDATE SET last_seen = excluded.last_seen, class = excluded.class",
            params![host, hw.fingerprint(), class, hw.cpu_model, hw.cores, hw.ram_bytes as i64, hw.kernel, hw.target, hw.isa, t],
        )?;
        Ok(self.conn.query_row(
            "SELECT id FROM fleet_devices WHERE host = ?1 AND fingerprint = ?2",
            params![host, hw.fingerprint()],
            |r| r.get(0),
        )?)
    }

    /// Record a measurement on a device (`device`: from [`History::fleet_device`]; `None` for
    /// a host that never answered).
    pub fn record_fleet(&self, device: Option<i64>, m: &FleetMeasurement) -> Result<()> {
        self.conn.execute(
            "INSERT INTO fleet_measurements (host, device_id, command, run_id, iteration, model, recipe, status, error,
               tg_tps, tg_min, tg_max, pp_tps, ratio, measured_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                m.host, device, m.command, m.run_id, m.iteration, m.model, m.recipe, m.status, m.error,
                m.tg_tps, m.tg_min, m.tg_max, m.pp_tps, m.ratio, now()
            ],
        )?;
        Ok(())
    }

    /// Every fleet device, by host then first seen.
    pub fn fleet_devices(&self) -> Result<Vec<FleetDeviceRow>> {
        let mut st = self.conn.prepare(
            "SELECT d.host, d.fingerprint, d.class, d.cpu_model, d.cores, d.ram_bytes, d.kernel, d.target, d.isa,
               d.first_seen, d.last_seen, (SELECT COUNT(*) FROM fleet_measurements m WHERE m.device_id = d.id)
             FROM fleet_devices d ORDER BY d.host, d.first_seen",
        )?;
        let rows = st.query_map([], |r| {
            Ok(FleetDeviceRow {
                host: r.get(0)?,
                fingerprint: r.get(1)?,
                class: r.get(2)?,
                hardware: Hardware {
                    cpu_model: r.get(3)?,
                    cores: r.get(4)?,
                    ram_bytes: r.get::<_, i64>(5)? as u64,
                    kernel: r.get(6)?,
                    target: r.get(7)?,
                    isa: r.get(8)?,
                },
                first_seen: r.get(9)?,
                last_seen: r.get(10)?,
                measurements: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Fleet measurements, oldest first; only those whose model (or recipe) contains `filter`
    /// when given, only run `run` when given.
    pub fn fleet_measurements(
        &self,
        filter: Option<&str>,
        run: Option<&str>,
    ) -> Result<Vec<FleetRow>> {
        let mut st = self.conn.prepare(
            "SELECT m.host, d.fingerprint, d.cpu_model, m.command, m.run_id, m.iteration, m.model, m.recipe,
               m.status, m.error, m.tg_tps, m.tg_min, m.tg_max, m.ratio, m.measured_at
             FROM fleet_measurements m LEFT JOIN fleet_devices d ON d.id = m.device_id
             WHERE (?1 IS NULL OR instr(m.model, ?1) > 0 OR instr(m.recipe, ?1) > 0)
               AND (?2 IS NULL OR m.run_id = ?2)
             ORDER BY m.id",
        )?;
        let rows = st.query_map(params![filter, run], |r| {
            Ok(FleetRow {
                host: r.get(0)?,
                fingerprint: r.get(1)?,
                cpu_model: r.get(2)?,
                command: r.get(3)?,
                run_id: r.get(4)?,
                iteration: r.get(5)?,
                model: r.get(6)?,
                recipe: r.get(7)?,
                status: r.get(8)?,
                error: r.get(9)?,
                tg_tps: r.get(10)?,
                tg_min: r.get(11)?,
                tg_max: r.get(12)?,
                ratio: r.get(13)?,
                measured_at: r.get(14)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hw(cores: u32) -> Hardware {
        Hardware {
            cpu_model: "Raspberry Pi 5 Model B Rev 1.0".into(),
            cores,
            ram_bytes: 8 << 30,
            kernel: "6.6.31".into(),
            target: "aarch64-unknown-linux-musl".into(),
            isa: "neon+dotprod".into(),
        }
    }

    #[test]
    fn devices_are_keyed_by_host_and_fingerprint_and_keep_their_measurements() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.db")).unwrap();
        let a = h.fleet_device("pi-1", "rpi5", &hw(4)).unwrap();
        assert_eq!(h.fleet_device("pi-1", "rpi5", &hw(4)).unwrap(), a);
        // The same name on other hardware is another device.
        let b = h.fleet_device("pi-1", "rpi5", &hw(2)).unwrap();
        assert_ne!(a, b);
        let m = FleetMeasurement {
            host: "pi-1".into(),
            command: "bench".into(),
            model: "m.gguf".into(),
            recipe: "as is".into(),
            status: "ok".into(),
            tg_tps: Some(12.5),
            ..Default::default()
        };
        h.record_fleet(Some(a), &m).unwrap();
        h.record_fleet(
            None,
            &FleetMeasurement {
                host: "pi-9".into(),
                status: "unreachable".into(),
                error: Some("ssh: connect to host pi-9 port 22: No route to host".into()),
                ..m.clone()
            },
        )
        .unwrap();
        let devices = h.fleet_devices().unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices.iter().map(|d| d.measurements).sum::<i64>(), 1);
        let rows = h.fleet_measurements(Some("m.gguf"), None).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].fingerprint.as_deref(), Some(&*hw(4).fingerprint()));
        assert_eq!(rows[1].fingerprint, None);
        assert_eq!(rows[1].status, "unreachable");
        assert!(h
            .fleet_measurements(Some("other"), None)
            .unwrap()
            .is_empty());
    }
}
