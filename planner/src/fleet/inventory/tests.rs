//! Ansible's documented inventory examples ("How to build your inventory", both formats) and
//! broken files, each a clear error naming the file, the line and the key.

use super::*;

fn ini(text: &str) -> Inventory {
    Inventory::parse(Path::new("hosts.ini"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn yml(text: &str) -> Inventory {
    Inventory::parse(Path::new("hosts.yml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn names(hosts: &[&Host]) -> Vec<String> {
    hosts.iter().map(|h| h.name.clone()).collect()
}

fn group_hosts(inv: &Inventory, g: &str) -> Vec<String> {
    let mut v = names(&inv.select(g).unwrap());
    v.sort();
    v
}

fn var<'a>(inv: &'a Inventory, host: &str, key: &str) -> Option<&'a str> {
    let h = inv.hosts.iter().find(|h| h.name == host)?;
    h.vars.get(key).map(|v| v.value.as_str())
}

const BASIC_INI: &str = "mail.example.com

[webservers]
foo.example.com
bar.example.com

[dbservers]
one.example.com
two.example.com
three.example.com
";

const BASIC_YAML: &str = "ungrouped:
  hosts:
    mail.example.com:
webservers:
  hosts:
    foo.example.com:
    bar.example.com:
dbservers:
  hosts:
    one.example.com:
    two.example.com:
    three.example.com:
";

const ALL_YAML: &str = "all:
  hosts:
    mail.example.com:
  children:
    webservers:
      hosts:
        foo.example.com:
        bar.example.com:
    dbservers:
      hosts:
        one.example.com:
        two.example.com:
        three.example.com:
";

#[test]
fn the_basic_example_reads_the_same_in_both_formats() {
    for inv in [ini(BASIC_INI), yml(BASIC_YAML), yml(ALL_YAML)] {
        let all: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
        assert_eq!(
            all,
            [
                "mail.example.com",
                "foo.example.com",
                "bar.example.com",
                "one.example.com",
                "two.example.com",
                "three.example.com"
            ]
        );
        assert_eq!(
            group_hosts(&inv, "webservers"),
            ["bar.example.com", "foo.example.com"]
        );
        assert_eq!(group_hosts(&inv, "dbservers").len(), 3);
        assert_eq!(group_hosts(&inv, "ungrouped"), ["mail.example.com"]);
        assert_eq!(group_hosts(&inv, "all").len(), 6);
        let foo = inv
            .hosts
            .iter()
            .find(|h| h.name == "foo.example.com")
            .unwrap();
        assert_eq!(foo.groups, ["all", "webservers"]);
    }
}

const META_INI: &str = "[webservers]
foo.example.com
bar.example.com

[dbservers]
one.example.com
two.example.com
three.example.com

[east]
foo.example.com
one.example.com
two.example.com

[west]
bar.example.com
three.example.com

[prod:children]
east

[test:children]
west
";

const META_YAML: &str = "all:
  hosts:
    mail.example.com:
  children:
    webservers:
      hosts:
        foo.example.com:
        bar.example.com:
    dbservers:
      hosts:
        one.example.com:
        two.example.com:
        three.example.com:
    east:
      hosts:
        foo.example.com:
        one.example.com:
        two.example.com:
    west:
      hosts:
        bar.example.com:
        three.example.com:
    prod:
      children:
        east:
    test:
      children:
        west:
";

#[test]
fn groups_of_groups_and_limit_patterns() {
    for inv in [ini(META_INI), yml(META_YAML)] {
        assert_eq!(
            group_hosts(&inv, "prod"),
            ["foo.example.com", "one.example.com", "two.example.com"]
        );
        assert_eq!(
            group_hosts(&inv, "test"),
            ["bar.example.com", "three.example.com"]
        );
        assert_eq!(group_hosts(&inv, "prod:&webservers"), ["foo.example.com"]);
        assert_eq!(group_hosts(&inv, "webservers:!east"), ["bar.example.com"]);
        assert_eq!(
            group_hosts(&inv, "webservers,dbservers:!prod"),
            ["bar.example.com", "three.example.com"]
        );
        assert_eq!(
            group_hosts(&inv, "t*.example.com"),
            ["three.example.com", "two.example.com"]
        );
        let one = inv
            .hosts
            .iter()
            .find(|h| h.name == "one.example.com")
            .unwrap();
        assert_eq!(one.groups, ["all", "dbservers", "prod", "east"]);
        let e = inv.select("staging").unwrap_err().to_string();
        assert!(
            e.contains("'staging'") && e.contains("names no host or group"),
            "{e}"
        );
        let e = inv.select("prod:&west").unwrap_err().to_string();
        assert!(e.contains("selects no host"), "{e}");
    }
}

#[test]
fn host_ranges_expand_as_ansible_expands_them() {
    let inv = ini("[webservers]\nwww[01:50].example.com\n\n[databases]\ndb-[a:f].example.com\n\n[odd]\nodd[01:50:2].example.com\n");
    let www = group_hosts(&inv, "webservers");
    assert_eq!(www.len(), 50);
    assert_eq!(
        (www[0].as_str(), www[49].as_str()),
        ("www01.example.com", "www50.example.com")
    );
    assert_eq!(group_hosts(&inv, "databases").len(), 6);
    let odd = names(&inv.select("odd").unwrap());
    assert_eq!(odd.len(), 25);
    assert_eq!(
        (odd[0].as_str(), odd[24].as_str()),
        ("odd01.example.com", "odd49.example.com")
    );
    // A port after a range, in both formats.
    let inv = ini("[web]\nweb[1:3].lan:2222\n");
    assert_eq!(
        group_hosts(&inv, "web"),
        ["web1.lan", "web2.lan", "web3.lan"]
    );
    assert_eq!(var(&inv, "web2.lan", "ansible_port"), Some("2222"));
    let inv = yml("web:\n  hosts:\n    'web[1:3].lan:2222':\n");
    assert_eq!(var(&inv, "web3.lan", "ansible_port"), Some("2222"));
    // Two ranges: the first varies slowest.
    assert_eq!(
        expand_range("r[1:2]-n[a:b]").unwrap(),
        ["r1-na", "r1-nb", "r2-na", "r2-nb"]
    );
    let yaml =
        yml("webservers:\n  hosts:\n    www[01:50].example.com:\n      sintra_profile: rpi5\n");
    assert_eq!(yaml.hosts.len(), 50);
    assert_eq!(
        var(&yaml, "www17.example.com", "sintra_profile"),
        Some("rpi5")
    );
    for bad in ["w[5:1]", "w[1:]", "w[a:10]", "w[1:3", "w[1:9:0]"] {
        let e = Inventory::parse(Path::new("r.ini"), &format!("[g]\n{bad}\n")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().contains("host range"), "{e}");
    }
}

const HOST_VARS_INI: &str = "[atlanta]
host1 http_port=80 maxRequestsPerChild=808
host2 http_port=303 maxRequestsPerChild=909

[other]
badwolf.example.com:5309
jumper ansible_port=5555 ansible_host=192.0.2.50

[targets]
localhost              ansible_connection=local
other1.example.com     ansible_connection=ssh        ansible_user=myuser
other2.example.com     ansible_connection=ssh        ansible_user=myotheruser
";

const HOST_VARS_YAML: &str = "atlanta:
  hosts:
    host1:
      http_port: 80
      maxRequestsPerChild: 808
    host2:
      http_port: 303
      maxRequestsPerChild: 909
other:
  hosts:
    badwolf.example.com:
      ansible_port: 5309
    jumper:
      ansible_port: 5555
      ansible_host: 192.0.2.50
targets:
  hosts:
    localhost:
      ansible_connection: local
    other1.example.com:
      ansible_connection: ssh
      ansible_user: myuser
    other2.example.com:
      ansible_connection: ssh
      ansible_user: myotheruser
";

#[test]
fn host_variables_and_connections_make_devices() {
    let t = Duration::from_secs(60);
    for inv in [ini(HOST_VARS_INI), yml(HOST_VARS_YAML)] {
        assert_eq!(var(&inv, "host2", "http_port"), Some("303"));
        assert_eq!(var(&inv, "host1", "maxRequestsPerChild"), Some("808"));
        let dev = |name: &str| {
            inv.device(inv.hosts.iter().find(|h| h.name == name).unwrap(), t)
                .unwrap()
        };
        match dev("badwolf.example.com").spec.transport {
            Transport::Ssh(s) => assert_eq!(
                (s.host.as_str(), s.port),
                ("badwolf.example.com", Some(5309))
            ),
            other => panic!("{other:?}"),
        }
        match dev("jumper").spec.transport {
            Transport::Ssh(s) => assert_eq!((s.host.as_str(), s.port), ("192.0.2.50", Some(5555))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            dev("localhost").spec.transport,
            Transport::Local { .. }
        ));
        match dev("other2.example.com").spec.transport {
            Transport::Ssh(s) => assert_eq!(s.user.as_deref(), Some("myotheruser")),
            other => panic!("{other:?}"),
        }
        assert_eq!(dev("host1").spec.timeout, t);
    }
}

const INHERIT_INI: &str = "[atlanta]
host1
host2

[raleigh]
host2
host3

[southeast:children]
atlanta
raleigh

[southeast:vars]
some_server=foo.southeast.example.com
halon_system_timeout=30
self_destruct_countdown=60
escape_pods=2

[usa:children]
southeast
northeast
southwest
northwest
";

const INHERIT_YAML: &str = "usa:
  children:
    southeast:
      children:
        atlanta:
          hosts:
            host1:
            host2:
        raleigh:
          hosts:
            host2:
            host3:
      vars:
        some_server: foo.southeast.example.com
        halon_system_timeout: 30
        self_destruct_countdown: 60
        escape_pods: 2
    northeast:
    northwest:
    southwest:
";

#[test]
fn group_variables_are_inherited_and_the_nearest_wins() {
    for inv in [ini(INHERIT_INI), yml(INHERIT_YAML)] {
        assert_eq!(
            var(&inv, "host3", "some_server"),
            Some("foo.southeast.example.com")
        );
        assert_eq!(var(&inv, "host1", "escape_pods"), Some("2"));
        assert_eq!(group_hosts(&inv, "usa"), ["host1", "host2", "host3"]);
        assert!(inv.groups.contains_key("northwest"));
        let h2 = inv.hosts.iter().find(|h| h.name == "host2").unwrap();
        assert_eq!(h2.groups, ["all", "usa", "southeast", "atlanta", "raleigh"]);
    }
    // A child group's value beats its parent's, the host's own beats both, `all` loses to all.
    let inv = ini("[all:vars]\nsintra_profile=x86-laptop\nescape_pods=1\n\n[atlanta]\nhost1\nhost2 escape_pods=9\n\n[atlanta:vars]\nescape_pods=3\n\n[southeast:children]\natlanta\n\n[southeast:vars]\nescape_pods=2\n");
    assert_eq!(var(&inv, "host1", "escape_pods"), Some("3"));
    assert_eq!(var(&inv, "host2", "escape_pods"), Some("9"));
    assert_eq!(var(&inv, "host1", "sintra_profile"), Some("x86-laptop"));
}

#[test]
fn sintra_keys_make_the_device_and_its_class() {
    let inv = yml("all:
  vars:
    ansible_user: pi
    sintra_timeout: 120
  children:
    pis:
      vars:
        sintra_profile: rpi5
        sintra_runtime_target: aarch64-unknown-linux-musl
      hosts:
        pi-[1:3]:
          ansible_ssh_private_key_file: /keys/fleet
          ansible_ssh_common_args: -o StrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null
    emulated:
      hosts:
        qemu-arm:
          ansible_host: 10.9.0.4
          ansible_port: 2222
          sintra_exec_prefix: qemu-aarch64-static -cpu max
          sintra_class: arm-emulated
          sintra_remote_dir: /tmp/sintra
");
    let d = inv.device(&inv.hosts[1], Duration::from_secs(5)).unwrap();
    assert_eq!(
        (d.name.as_str(), d.class.as_str(), d.profile.as_deref()),
        ("pi-2", "rpi5", Some("rpi5"))
    );
    assert_eq!(d.spec.timeout, Duration::from_secs(120));
    assert_eq!(
        d.spec.runtime_target.as_deref(),
        Some("aarch64-unknown-linux-musl")
    );
    match &d.spec.transport {
        Transport::Ssh(s) => {
            assert_eq!((s.host.as_str(), s.user.as_deref()), ("pi-2", Some("pi")));
            let o = [
                "StrictHostKeyChecking=no",
                "UserKnownHostsFile=/dev/null",
                "IdentityFile=/keys/fleet",
            ];
            assert_eq!(s.options, o);
        }
        other => panic!("{other:?}"),
    }
    let q = inv.device(&inv.hosts[3], Duration::from_secs(5)).unwrap();
    assert_eq!(q.class, "arm-emulated");
    match &q.spec.transport {
        Transport::Ssh(s) => {
            assert_eq!((s.host.as_str(), s.port), ("10.9.0.4", Some(2222)));
            assert_eq!(
                s.exec_prefix.as_deref(),
                Some("qemu-aarch64-static -cpu max")
            );
            assert_eq!(s.remote_dir, "/tmp/sintra");
        }
        other => panic!("{other:?}"),
    }
}

/// `text` in `file` fails at `line`, naming `key` (when given) and saying `words`.
fn fails(file: &str, text: &str, line: usize, key: Option<&str>, words: &[&str]) {
    let e = match Inventory::parse(Path::new(file), text) {
        Ok(inv) => match inv
            .hosts
            .iter()
            .try_for_each(|h| inv.device(h, Duration::from_secs(1)).map(|_| ()))
        {
            Ok(()) => panic!("{file} parsed:\n{text}"),
            Err(e) => e,
        },
        Err(e) => e,
    };
    let s = e.to_string();
    assert_eq!(e.line, line, "{s}");
    assert_eq!(e.key.as_deref(), key, "{s}");
    let at = if line > 0 {
        format!("{file}:{line}: ")
    } else {
        format!("{file}: ")
    };
    assert!(s.starts_with(&at), "{s}");
    for w in words {
        assert!(s.contains(w), "'{w}' not in: {s}");
    }
}

#[test]
fn broken_ini_files_are_clear_errors() {
    fails("a.ini", "[web\nhost1\n", 1, None, &["no closing ']'"]);
    fails(
        "a.ini",
        "[web:child]\nhost1\n",
        1,
        None,
        &["'child' is not a kind of section"],
    );
    fails(
        "a.ini",
        "[web]\nhost1\nhost2\nhost1\n",
        4,
        None,
        &["duplicate host 'host1'", "lines 2 and 4"],
    );
    fails(
        "a.ini",
        "[web]\nhost1 sintra_profle=rpi5\n",
        2,
        Some("sintra_profle"),
        &["unknown host variable", "did you mean 'sintra_profile'"],
    );
    fails(
        "a.ini",
        "[web]\nhost1 ansible_port=ssh\n",
        2,
        Some("ansible_port"),
        &["'ssh' is not a port number"],
    );
    fails(
        "a.ini",
        "[web]\nhost1 ansible_port=70000\n",
        2,
        Some("ansible_port"),
        &["70000 is not a port number"],
    );
    fails(
        "a.ini",
        "[web]\nhost1 rpi5\n",
        2,
        None,
        &["'rpi5' after host 'host1' is not KEY=VALUE"],
    );
    fails(
        "a.ini",
        "[web:vars]\nntp_server\n[web]\nh\n",
        2,
        None,
        &["is not KEY=VALUE"],
    );
    fails(
        "a.ini",
        "[web]\nh ansible_connection=winrm\n",
        2,
        Some("ansible_connection"),
        &["'winrm'", "ssh or runs them locally"],
    );
    fails(
        "a.ini",
        "[web]\nh ansible_ssh_pass=secret\n",
        2,
        Some("ansible_ssh_pass"),
        &["password logins are not supported"],
    );
    fails(
        "a.ini",
        "[web]\nh ansible_ssh_common_args='-J bastion'\n",
        2,
        Some("ansible_ssh_common_args"),
        &["only ssh options of the form -o KEY=VALUE"],
    );
    fails(
        "a.ini",
        "[web]\nh ansible_ssh_privat_key_file=/k\n",
        2,
        Some("ansible_ssh_privat_key_file"),
        &["an ssh setting Sintra does not read"],
    );
    fails(
        "a.ini",
        "[a:children]\nb\n[b:children]\na\n[b]\nh\n",
        1,
        None,
        &["its own child"],
    );
    fails(
        "a.ini",
        "[web]\nh 'unclosed\n",
        2,
        None,
        &["unclosed ' quote"],
    );
    fails("a.ini", "# nothing here\n", 0, None, &["names no host"]);
}

#[test]
fn broken_yaml_files_are_clear_errors() {
    // A host indented to the level of `hosts:` becomes a key of the group.
    fails(
        "b.yml",
        "webservers:\n  hosts:\n    foo.example.com:\n  bar.example.com:\n",
        4,
        Some("bar.example.com"),
        &["not hosts, vars or children", "indented to the wrong level"],
    );
    // Indentation that breaks the YAML itself.
    fails(
        "b.yml",
        "webservers:\n  hosts:\n    foo:\n   bar:\n",
        4,
        None,
        &["not valid YAML", "indentation"],
    );
    fails(
        "b.yml",
        "webservers:\n  hosts:\n    foo.example.com:\n    bar.example.com:\n    foo.example.com:\n",
        5,
        None,
        &["duplicate host 'foo.example.com'", "lines 3 and 5"],
    );
    fails(
        "b.yml",
        "all:\n  hosts:\n    pi1:\n      sintra_exec_prefx: nice\n",
        4,
        Some("sintra_exec_prefx"),
        &["unknown host variable", "did you mean 'sintra_exec_prefix'"],
    );
    fails(
        "b.yml",
        "all:\n  hosts:\n    pi1:\n      ansible_port: [22]\n",
        4,
        Some("ansible_port"),
        &["takes a single value"],
    );
    fails(
        "b.yml",
        "web:\n  hosts:\n    - foo\n    - bar\n",
        3,
        Some("hosts"),
        &["not a list"],
    );
    fails(
        "b.yml",
        "web:\n  hosts:\n    foo: 10.0.0.1\n",
        3,
        None,
        &["host 'foo' is followed by a single value"],
    );
    fails(
        "b.yml",
        "- web\n- db\n",
        1,
        None,
        &["must be a mapping of groups"],
    );
    fails("b.yml", "", 0, None, &["empty"]);
}

#[test]
fn formats_are_told_apart_without_an_extension() {
    let a = Inventory::parse(Path::new("inventory"), BASIC_INI).unwrap();
    let b = Inventory::parse(Path::new("inventory"), &format!("---\n{BASIC_YAML}")).unwrap();
    let c = Inventory::parse(Path::new("inventory"), ALL_YAML).unwrap();
    assert_eq!(a.hosts.len(), 6);
    assert_eq!(b.hosts.len(), 6);
    assert_eq!(c.hosts.len(), 6);
}

#[test]
fn glob_matches_like_a_shell() {
    assert!(glob("*.example.com", "a.example.com"));
    assert!(glob("pi-*", "pi-1"));
    assert!(glob("a*b*c", "axxbyyc"));
    assert!(!glob("a*b*c", "axxc"));
    assert!(glob("*", "anything"));
    assert!(!glob("pi", "pi-1"));
}
