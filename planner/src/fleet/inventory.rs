//! Ansible inventories (issue #18): the hosts of a fleet, as the people who run fleets already
//! keep them. Both of Ansible's static formats are read — INI ([`ini`]) and YAML ([`yaml`]) —
//! into one model: hosts in file order, groups with their children and variables, and each
//! host's variables merged as Ansible merges them (the `all` group first, then groups from
//! parents to children, groups of the same depth by name, the host's own last).
//!
//! Sintra reads the connection variables Ansible's ssh connection uses (`ansible_host`,
//! `ansible_user`, `ansible_port`, `ansible_ssh_private_key_file`, `ansible_connection`) and
//! its own `sintra_*` keys ([`SINTRA_KEYS`]); every other variable is the inventory's own
//! business and is kept, not checked. A misspelt `sintra_*` key, a port that is not a number,
//! or a connection Sintra cannot use is an error naming the file, the line and the key.

mod ini;
mod yaml;

use crate::device::ssh::SshTarget;
use crate::device::{DeviceSpec, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it was read from.
    pub source: PathBuf,
    /// Every host, in the order the file first names them.
    pub hosts: Vec<Host>,
    /// Every group, `all` and `ungrouped` included.
    pub groups: BTreeMap<String, Group>,
}

/// A host and the variables that apply to it.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// The line that first names it.
    pub line: usize,
    /// The groups it belongs to, directly or through children, `all` first.
    pub groups: Vec<String>,
    /// Its variables, merged over its groups' (see the module documentation).
    pub vars: BTreeMap<String, Var>,
}

/// A group: its own hosts, child groups and variables.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: BTreeMap<String, Var>,
    /// The line that first names it (0 for the implicit `all` and `ungrouped`).
    pub line: usize,
}

/// A variable's value (as text: Sintra's keys are all scalars) and the line that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub value: String,
    pub line: usize,
}

/// What went wrong, and where: `FILE:LINE: key 'KEY': MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key '{k}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InventoryError {}

impl InventoryError {
    /// An error at `line` of `file` (0: the file as a whole), about `key` if one.
    pub fn at(file: &Path, line: usize, key: Option<&str>, message: String) -> Self {
        InventoryError {
            file: file.to_path_buf(),
            line,
            key: key.map(str::to_string),
            message,
        }
    }
}

/// Sintra's own host variables.
pub const SINTRA_KEYS: [(&str, &str); 8] = [
    (
        "sintra_profile",
        "the hardware profile of the device (rpi5, jetson-orin-nano, ...)",
    ),
    (
        "sintra_class",
        "devices of one class share recipes (default: the profile, else the runtime target)",
    ),
    (
        "sintra_exec_prefix",
        "prepended to the runtime's command line (nice -n -5, qemu-aarch64-static, taskset -c 0)",
    ),
    (
        "sintra_runtime_target",
        "target triple of the runtime to deploy (default: from uname -m)",
    ),
    ("sintra_runtime", "the runtime binary to deploy"),
    (
        "sintra_remote_dir",
        "directory on the device for the runtime and models",
    ),
    (
        "sintra_timeout",
        "seconds of silence allowed from the device's runtime",
    ),
    (
        "sintra_connect_timeout",
        "seconds to wait for the ssh connection",
    ),
];

/// The `ansible_*` variables Sintra reads (older `ansible_ssh_*` spellings included).
const ANSIBLE_KEYS: [&str; 10] = [
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_host",
    "ansible_user",
    "ansible_port",
    "ansible_ssh_private_key_file",
    "ansible_connection",
    "ansible_ssh_host",
    "ansible_ssh_user",
    "ansible_ssh_port",
];

/// Ansible variables that would change how a host is reached in a way Sintra cannot follow.
const UNSUPPORTED: [(&str, &str); 3] = [
    (
        "ansible_password",
        "password logins are not supported: use a key (ansible_ssh_private_key_file)",
    ),
    (
        "ansible_ssh_pass",
        "password logins are not supported: use a key (ansible_ssh_private_key_file)",
    ),
    (
        "ansible_ssh_password",
        "password logins are not supported: use a key (ansible_ssh_private_key_file)",
    ),
];

/// A device of the fleet: an inventory host made into something the planner can reach.
#[derive(Debug, Clone)]
pub struct FleetHost {
    /// The inventory's name for it.
    pub name: String,
    pub spec: DeviceSpec,
    /// `sintra_profile`.
    pub profile: Option<String>,
    /// `sintra_class`, else the profile, else the runtime target, else the host name.
    pub class: String,
    pub groups: Vec<String>,
}

impl Inventory {
    /// Read an inventory: YAML when the file ends in `.yml`/`.yaml` or its first meaningful
    /// line looks like YAML (`name:`, `---`), else INI.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InventoryError::at(path, 0, None, format!("cannot read the inventory: {e}"))
        })?;
        Inventory::parse(path, &text)
    }

    /// Parse `text` as the inventory `path` (the name used in errors and for the format).
    pub fn parse(path: &Path, text: &str) -> Result<Inventory, InventoryError> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let yaml = match ext {
            "yml" | "yaml" => true,
            "ini" | "cfg" => false,
            _ => looks_like_yaml(text),
        };
        let raw = if yaml {
            yaml::parse(path, text)?
        } else {
            ini::parse(path, text)?
        };
        raw.resolve(path)
    }

    /// The hosts an Ansible `--limit` pattern selects, in inventory order: names of groups or
    /// hosts (with `*` wildcards), joined by `:` (or `,`) for a union, `:&` for an
    /// intersection and `:!` to exclude. An empty selection is an error naming the pattern.
    pub fn select(&self, pattern: &str) -> Result<Vec<&Host>, InventoryError> {
        let mut chosen: Option<BTreeSet<&str>> = None;
        let mut excluded: BTreeSet<&str> = BTreeSet::new();
        let mut intersect: Vec<BTreeSet<&str>> = Vec::new();
        for term in pattern
            .split([':', ','])
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (op, name) = match term.as_bytes()[0] {
                b'&' => ('&', &term[1..]),
                b'!' => ('!', &term[1..]),
                _ => ('+', term),
            };
            let matched = self.matching(name);
            if matched.is_empty() {
                return Err(self.err(
                    0,
                    None,
                    format!(
                        "'{name}' (in --limit '{pattern}') names no host or group of the inventory"
                    ),
                ));
            }
            match op {
                '&' => intersect.push(matched),
                '!' => excluded.extend(matched),
                _ => chosen.get_or_insert_with(BTreeSet::new).extend(matched),
            }
        }
        let mut set =
            chosen.unwrap_or_else(|| self.hosts.iter().map(|h| h.name.as_str()).collect());
        for i in intersect {
            set.retain(|h| i.contains(h));
        }
        set.retain(|h| !excluded.contains(h));
        let hosts: Vec<&Host> = self
            .hosts
            .iter()
            .filter(|h| set.contains(h.name.as_str()))
            .collect();
        if hosts.is_empty() {
            return Err(self.err(0, None, format!("--limit '{pattern}' selects no host")));
        }
        Ok(hosts)
    }

    /// Hosts named `name` or in a group named `name` (either may have `*` wildcards).
    fn matching(&self, name: &str) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        for (g, _) in self.groups.iter().filter(|(g, _)| glob(name, g)) {
            for h in &self.hosts {
                if h.groups.iter().any(|x| x == g) {
                    out.insert(h.name.as_str());
                }
            }
        }
        for h in self.hosts.iter().filter(|h| glob(name, &h.name)) {
            out.insert(h.name.as_str());
        }
        out
    }

    fn err(&self, line: usize, key: Option<&str>, message: String) -> InventoryError {
        InventoryError::at(&self.source, line, key, message)
    }

    /// `host` as a device: its connection from the `ansible_*` variables, its runtime and
    /// profile from the `sintra_*` ones, `timeout` unless `sintra_timeout` says otherwise.
    pub fn device(&self, host: &Host, timeout: Duration) -> Result<FleetHost, InventoryError> {
        let get = |k: &str| host.vars.get(k);
        let text = |k: &str| get(k).map(|v| v.value.clone()).filter(|v| !v.is_empty());
        let number =
            |k: &str, what: &str| -> Result<Option<u64>, InventoryError> {
                match get(k) {
                    None => Ok(None),
                    Some(v) => v.value.parse::<u64>().map(Some).map_err(|_| {
                        self.err(v.line, Some(k), format!("'{}' is not {what}", v.value))
                    }),
                }
            };
        let port = match number("ansible_port", "a port number (1-65535)")? {
            Some(p) => Some(p),
            None => number("ansible_ssh_port", "a port number (1-65535)")?,
        };
        let port = match port {
            None => None,
            Some(p @ 1..=65535) => Some(p as u16),
            Some(p) => {
                let k = if get("ansible_port").is_some() {
                    "ansible_port"
                } else {
                    "ansible_ssh_port"
                };
                let line = get(k).map_or(0, |v| v.line);
                return Err(self.err(line, Some(k), format!("{p} is not a port number (1-65535)")));
            }
        };
        let secs = |k: &str| -> Result<Option<Duration>, InventoryError> {
            match get(k) {
                None => Ok(None),
                Some(v) => match v.value.parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => Ok(Some(Duration::from_secs_f64(s))),
                    _ => Err(self.err(
                        v.line,
                        Some(k),
                        format!("'{}' is not a number of seconds", v.value),
                    )),
                },
            }
        };
        let exec_prefix = text("sintra_exec_prefix");
        let connection = text("ansible_connection").unwrap_or_else(|| "ssh".into());
        let transport = match connection.as_str() {
            "ssh" | "smart" | "paramiko" => {
                let address = text("ansible_host")
                    .or_else(|| text("ansible_ssh_host"))
                    .unwrap_or_else(|| host.name.clone());
                let mut options = Vec::new();
                for k in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
                    if let Some(v) = get(k) {
                        let o = ssh_options(&v.value).map_err(|m| self.err(v.line, Some(k), m))?;
                        options.extend(o);
                    }
                }
                if let Some(key) = text("ansible_ssh_private_key_file") {
                    options.push(format!("IdentityFile={}", expand_home(&key)));
                }
                let mut target = SshTarget {
                    host: address,
                    user: text("ansible_user").or_else(|| text("ansible_ssh_user")),
                    port,
                    exec_prefix,
                    config_file: None,
                    options,
                    remote_dir: text("sintra_remote_dir").unwrap_or_else(|| ".sintra".into()),
                    connect_timeout: Duration::from_secs(10),
                };
                if let Some(t) = secs("sintra_connect_timeout")? {
                    target.connect_timeout = t;
                }
                Transport::Ssh(target)
            }
            "local" => Transport::Local { exec_prefix },
            other => {
                let line = get("ansible_connection").map_or(0, |v| v.line);
                return Err(self.err(
                    line,
                    Some("ansible_connection"),
                    format!("'{other}': Sintra reaches devices over ssh or runs them locally (ssh, local)"),
                ));
            }
        };
        let runtime_target = text("sintra_runtime_target");
        let profile = text("sintra_profile");
        let class = text("sintra_class")
            .or_else(|| profile.clone())
            .or_else(|| runtime_target.clone())
            .unwrap_or_else(|| host.name.clone());
        Ok(FleetHost {
            name: host.name.clone(),
            spec: DeviceSpec {
                transport,
                runtime_target,
                runtime: text("sintra_runtime").map(|p| PathBuf::from(expand_home(&p))),
                timeout: secs("sintra_timeout")?.unwrap_or(timeout),
            },
            profile,
            class,
            groups: host.groups.clone(),
        })
    }
}

/// The `-o KEY=VALUE` options of `ansible_ssh_common_args`/`_extra_args` (what inventories use
/// them for: `-o StrictHostKeyChecking=no`, `-o ProxyJump=bastion`); any other ssh argument is
/// refused rather than dropped.
fn ssh_options(args: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut words = args.split_whitespace();
    while let Some(w) = words.next() {
        let opt = match w.strip_prefix("-o") {
            Some("") => words.next().map(str::to_string),
            Some(rest) => Some(rest.to_string()),
            None => None,
        };
        match opt {
            Some(o) if o.contains('=') && !o.starts_with('=') => {
                out.push(o.trim_matches(|c| c == '\'' || c == '"').to_string())
            }
            _ => {
                return Err(format!(
                    "'{args}': Sintra passes on only ssh options of the form -o KEY=VALUE (put the rest in ~/.ssh/config)"
                ))
            }
        }
    }
    Ok(out)
}

/// `~/x` with the home directory.
fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

/// Whether `name` matches `pattern`, whose `*` stands for any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// Whether an inventory without a telling extension is YAML: its first line that is neither
/// blank nor a comment is `---` or a `key:` line, not an INI `[section]` or host line.
fn looks_like_yaml(text: &str) -> bool {
    let Some(first) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
    else {
        return false;
    };
    first == "---" || (first.ends_with(':') && !first.starts_with('['))
}

/// An inventory as a format reader leaves it: groups and hosts with their own variables,
/// before groups are linked and variables merged.
#[derive(Debug, Default)]
struct Raw {
    /// Hosts in the order first named, with the line and their own variables.
    hosts: Vec<(String, usize, BTreeMap<String, Var>)>,
    /// Each host's index in `hosts` (ranges make inventories of thousands of hosts).
    index: BTreeMap<String, usize>,
    groups: BTreeMap<String, Group>,
}

impl Raw {
    /// The host `name` (added at `line` if new): its index.
    fn host(&mut self, name: &str, line: usize) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.hosts.push((name.to_string(), line, BTreeMap::new()));
        self.index.insert(name.to_string(), self.hosts.len() - 1);
        self.hosts.len() - 1
    }

    /// The group `name` (added at `line` if new).
    fn group(&mut self, name: &str, line: usize) -> &mut Group {
        let g = self.groups.entry(name.to_string()).or_default();
        if g.line == 0 {
            g.line = line;
        }
        g
    }

    /// Link groups, check for cycles, merge variables, check the keys Sintra reads.
    fn resolve(mut self, path: &Path) -> Result<Inventory, InventoryError> {
        let err = |line: usize, key: Option<&str>, message: String| {
            InventoryError::at(path, line, key, message)
        };
        self.groups.entry("all".into()).or_default();
        self.groups.entry("ungrouped".into()).or_default();
        // Children named but never defined are empty groups, as in Ansible.
        let named: Vec<(String, usize)> = self
            .groups
            .values()
            .flat_map(|g| g.children.iter().map(move |c| (c.clone(), g.line)))
            .collect();
        for (c, line) in named {
            self.group(&c, line);
        }
        // Depth of each group below `all` (longest path from a root), refusing cycles.
        let mut depth: BTreeMap<String, usize> = BTreeMap::new();
        fn visit(
            g: &str,
            groups: &BTreeMap<String, Group>,
            d: usize,
            path: &mut Vec<String>,
            depth: &mut BTreeMap<String, usize>,
        ) -> Result<(), (String, Vec<String>)> {
            if path.iter().any(|p| p == g) {
                return Err((g.to_string(), path.clone()));
            }
            let e = depth.entry(g.to_string()).or_insert(d);
            *e = (*e).max(d);
            path.push(g.to_string());
            for c in &groups[g].children {
                visit(c, groups, d + 1, path, depth)?;
            }
            path.pop();
            Ok(())
        }
        let is_child: BTreeSet<&String> = self.groups.values().flat_map(|g| &g.children).collect();
        let roots: Vec<String> = self
            .groups
            .keys()
            .filter(|g| !is_child.contains(g))
            .cloned()
            .collect();
        for r in &roots {
            let d = usize::from(r != "all");
            visit(r, &self.groups, d, &mut Vec::new(), &mut depth).map_err(|(g, p)| {
                let line = self.groups.get(&g).map_or(0, |x| x.line);
                err(
                    line,
                    None,
                    format!("group '{g}' is its own child ({} -> {g})", p.join(" -> ")),
                )
            })?;
        }
        if depth.len() < self.groups.len() {
            // Every group is reachable from a root unless groups only form cycles.
            let g = self
                .groups
                .keys()
                .find(|g| !depth.contains_key(*g))
                .cloned()
                .unwrap_or_default();
            let line = self.groups.get(&g).map_or(0, |x| x.line);
            return Err(err(
                line,
                None,
                format!("group '{g}' is its own child (a cycle of children)"),
            ));
        }
        // Each host's groups: those naming it and their ancestors, `all` first.
        let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, g) in &self.groups {
            for c in &g.children {
                parents.entry(c.as_str()).or_default().push(name.as_str());
            }
        }
        // The groups naming each host directly.
        let mut direct: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (g, group) in &self.groups {
            for h in &group.hosts {
                let v = direct.entry(h.as_str()).or_default();
                if v.last() != Some(&g.as_str()) {
                    v.push(g.as_str());
                }
            }
        }
        let mut hosts = Vec::with_capacity(self.hosts.len());
        let mut ungrouped = Vec::new();
        for (name, line, own) in &self.hosts {
            let mut set: BTreeSet<&str> = BTreeSet::new();
            let mut stack: Vec<&str> = direct.get(name.as_str()).cloned().unwrap_or_default();
            if stack.iter().all(|g| *g == "all" || *g == "ungrouped") {
                ungrouped.push(name.clone());
                stack.push("ungrouped");
            }
            while let Some(g) = stack.pop() {
                if set.insert(g) {
                    stack.extend(parents.get(g).into_iter().flatten());
                }
            }
            set.insert("all");
            let mut groups: Vec<&str> = set.into_iter().collect();
            groups.sort_by_key(|g| (depth.get(*g).copied().unwrap_or(0), *g));
            let mut vars = BTreeMap::new();
            for g in &groups {
                for (k, v) in &self.groups[*g].vars {
                    vars.insert(k.clone(), v.clone());
                }
            }
            for (k, v) in own {
                vars.insert(k.clone(), v.clone());
            }
            for (k, v) in &vars {
                check_key(k, v).map_err(|m| err(v.line, Some(k), m))?;
            }
            hosts.push(Host {
                name: name.clone(),
                line: *line,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                vars,
            });
        }
        // Group variables are checked even where no host uses them.
        for g in self.groups.values() {
            for (k, v) in &g.vars {
                check_key(k, v).map_err(|m| err(v.line, Some(k), m))?;
            }
        }
        let u = self.groups.entry("ungrouped".into()).or_default();
        let listed: BTreeSet<String> = u.hosts.iter().cloned().collect();
        u.hosts
            .extend(ungrouped.into_iter().filter(|h| !listed.contains(h)));
        if hosts.is_empty() {
            return Err(err(0, None, "the inventory names no host".into()));
        }
        Ok(Inventory {
            source: path.to_path_buf(),
            hosts,
            groups: self.groups,
        })
    }
}

/// An unknown `sintra_*` key (with the nearest known one), or an Ansible connection variable
/// Sintra cannot honour.
fn check_key(k: &str, v: &Var) -> Result<(), String> {
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(u, _)| *u == k) {
        return Err(why.to_string());
    }
    if k.starts_with("sintra_") && !SINTRA_KEYS.iter().any(|(s, _)| *s == k) {
        let near = SINTRA_KEYS
            .iter()
            .map(|(s, _)| (edit_distance(k, s), *s))
            .min()
            .filter(|(d, _)| *d <= 3)
            .map(|(_, s)| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        let known: Vec<&str> = SINTRA_KEYS.iter().map(|(s, _)| *s).collect();
        return Err(format!(
            "unknown host variable{near}; Sintra's are {}",
            known.join(", ")
        ));
    }
    if k.starts_with("ansible_ssh_") && !ANSIBLE_KEYS.contains(&k) && !ignored_ssh_key(k) {
        return Err(format!(
            "'{}': an ssh setting Sintra does not read; it reads {}",
            v.value,
            ANSIBLE_KEYS.join(", ")
        ));
    }
    Ok(())
}

/// `ansible_ssh_*` settings that only tune Ansible's own ssh use and change nothing for Sintra.
fn ignored_ssh_key(k: &str) -> bool {
    matches!(
        k,
        "ansible_ssh_pipelining"
            | "ansible_ssh_executable"
            | "ansible_ssh_transfer_method"
            | "ansible_ssh_retries"
    )
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Ansible's host ranges: `www[01:50].example.com` (numbers keep the width of a zero-padded
/// start), `db-[a:f]`, an optional stride `[1:10:2]`, several ranges in one name. Plain names
/// come back as they are.
fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("host range '{pattern}' has no closing ']'"))?;
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(format!(
            "host range '[{body}]' in '{pattern}' is not [START:END] or [START:END:STEP]"
        ));
    }
    let step = match parts.get(2) {
        None => 1,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "host range '[{body}]' in '{pattern}': step '{s}' is not a positive number"
                ))
            }
        },
    };
    let (a, b) = (parts[0], parts[1]);
    let items: Vec<String> = if let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) {
        if x > y {
            return Err(format!(
                "host range '[{body}]' in '{pattern}' starts after it ends"
            ));
        }
        if (y - x) / step as u64 > 100_000 {
            return Err(format!(
                "host range '[{body}]' in '{pattern}' names more than 100000 hosts"
            ));
        }
        let width = if a.len() > 1 && a.starts_with('0') {
            a.len()
        } else {
            0
        };
        (x..=y)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else if a.len() == 1
        && b.len() == 1
        && a.chars().all(|c| c.is_ascii_alphabetic())
        && b.chars().all(|c| c.is_ascii_alphabetic())
    {
        let (x, y) = (a.as_bytes()[0], b.as_bytes()[0]);
        if x > y {
            return Err(format!(
                "host range '[{body}]' in '{pattern}' starts after it ends"
            ));
        }
        (x..=y)
            .step_by(step)
            .map(|c| (c as char).to_string())
            .collect()
    } else {
        return Err(format!(
            "host range '[{body}]' in '{pattern}' is neither numbers nor single letters"
        ));
    };
    // Ansible's order: the first range varies slowest.
    let rests = expand_range(tail)?;
    let mut out = Vec::with_capacity(items.len() * rests.len());
    for i in &items {
        for rest in &rests {
            out.push(format!("{head}{i}{rest}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
