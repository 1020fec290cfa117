//! The sliced decision (`decide`, with its cached plans) against the
//! whole set evaluated by Cedar (`decide_full`), on generated policy sets
//! and many generated requests: the same effect, determining policies,
//! reason, annotations and errors, or the same refusal.

use std::path::Path;

use serde_json::{Value, json};

use super::{Input, Policies, tests::input};

/// A small deterministic generator (xorshift64*), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Conditions of every kind the plan tells apart: static ones (caller,
/// resource), ones that read the context or the arguments, ones that can
/// err at run time (an overflow on the context's time), static ones that
/// err for some callers (an overflow unless the caller has no scopes).
const ATOMS: &[&str] = &[
    r#"principal.auth_method == "oidc""#,
    r#"principal.auth_method != "anonymous""#,
    r#"principal.scopes.contains("write")"#,
    r#"principal.subject == "alice""#,
    r#"principal.issuer like "https://*""#,
    r#"principal in Mcp::Group::"g2""#,
    r#"principal == Mcp::User::"https://idp|bob""#,
    r#"resource.name == "t1""#,
    r#"["t2", "t3"].contains(resource.name)"#,
    r#"resource in Mcp::Server::"s1""#,
    r#"resource.hasTag("path") && resource.getTag("path") like "/srv/*""#,
    r#"resource.hasTag("n") && resource.getTag("n") == "1""#,
    r#"context.arguments_json like "*etc*""#,
    r#"context.source_ip.isInRange(ip("10.0.0.0/8"))"#,
    r#"context.time.hour < 12"#,
    r#"context.grants.contains(resource.name)"#,
    r#"context.client.name like "*scan*""#,
    r#"context.time.unix * 10000000000 > 1"#,
    r#"principal.scopes.isEmpty() || 9223372036854775807 + 1 > 0"#,
];

const PRINCIPALS: &[&str] = &[
    "principal",
    r#"principal in Mcp::Group::"g1""#,
    r#"principal in Mcp::Group::"g3""#,
    r#"principal == Mcp::User::"https://idp|alice""#,
];

const RESOURCES: &[&str] = &[
    "resource",
    r#"resource in Mcp::Server::"s1""#,
    r#"resource in Mcp::Server::"s2""#,
    r#"resource == Mcp::Tool::"t1""#,
];

/// One random `tools/call` policy, with annotations now and then.
fn policy(rng: &mut Rng, n: usize) -> String {
    let mut t = format!("@id(\"p{n}\")\n");
    let permit = rng.chance(60);
    if permit && rng.chance(20) {
        t += &format!("@approval(\"{}\")\n", rng.pick(&["leads", "oncall"]));
    }
    if permit && rng.chance(15) {
        t += "@mask(\"none\")\n";
    }
    t += &format!(
        "{} ({}, action == Mcp::Action::\"tools/call\", {})",
        if permit { "permit" } else { "forbid" },
        rng.pick(PRINCIPALS),
        rng.pick(RESOURCES)
    );
    for _ in 0..rng.below(3) {
        let atoms: Vec<String> = (0..=rng.below(3))
            .map(|_| format!("({})", rng.pick(ATOMS)))
            .collect();
        let kind = if rng.chance(70) { "when" } else { "unless" };
        t += &format!("\n{kind} {{ {} }}", atoms.join(" && "));
    }
    t + ";\n"
}

/// A set of `count` random policies, plus a session rule for other
/// methods.
fn random_set(rng: &mut Rng, count: usize) -> Policies {
    let mut text = String::from(
        "@id(\"session\")\npermit (principal, action in [Mcp::Action::\"initialize\", \
         Mcp::Action::\"tools/list\"], resource) when { principal.auth_method != \"anonymous\" };\n",
    );
    for n in 0..count {
        text += &policy(rng, n);
    }
    Policies::from_sources(&[("gen.cedar".into(), text.clone())])
        .unwrap_or_else(|e| panic!("generated set must load: {e}\n{text}"))
}

/// A random request against the generated sets' names.
fn request(rng: &mut Rng) -> Input {
    let subject = *rng.pick(&["alice", "bob", "carol", "dave"]);
    let groups: Vec<&str> = ["g1", "g2", "g3", "dev", "analysts"]
        .into_iter()
        .filter(|_| rng.chance(35))
        .collect();
    let method = *rng.pick(&[
        "tools/call",
        "tools/call",
        "tools/call",
        "tools/list",
        "initialize",
    ]);
    let tool = *rng.pick(&["t1", "t2", "t3", "read_file", "query"]);
    let mut i = input(
        subject,
        &groups,
        method,
        (method == "tools/call").then_some(tool),
    );
    i.server = rng.pick(&["s1", "s2", "files", "db"]).to_string();
    if rng.chance(20) {
        i.auth_method = "anonymous".into();
    }
    if rng.chance(40) {
        i.scopes = vec!["write".into()];
    }
    if rng.chance(30) {
        i.issuer = "idp-b".into();
    }
    if rng.chance(30) {
        i.grants = vec![tool.to_string()];
    }
    if rng.chance(20) {
        i.client_name = "scanner".into();
    }
    i.source_ip = rng
        .pick(&["10.1.2.3", "203.0.113.9", "127.0.0.1"])
        .parse()
        .unwrap();
    i.time += rng.below(24) as i64 * 3600;
    if method == "tools/call" {
        i.arguments = Some(arguments(rng));
    }
    i
}

fn arguments(rng: &mut Rng) -> Value {
    let mut a = serde_json::Map::new();
    if rng.chance(60) {
        let path = rng.pick(&["/srv/data/a.csv", "/etc/passwd", "/srv/../etc/x", "rel/x"]);
        a.insert("path".into(), json!(path));
    }
    if rng.chance(40) {
        a.insert("n".into(), json!(rng.pick(&["1", "2"])));
    }
    if rng.chance(20) {
        a.insert("sql".into(), json!("SELECT 1; DROP TABLE t"));
    }
    if rng.chance(3) {
        // Refused by flattening whether or not a policy reads tags.
        a.insert("a.b".into(), json!("1"));
        a.insert("a".into(), json!({"b": "2"}));
    }
    Value::Object(a)
}

fn assert_same(p: &Policies, i: &Input, what: &str) {
    let sliced = p.decide(i);
    let full = p.decide_full(i);
    assert_eq!(sliced, full, "{what}: {i:?}");
}

#[test]
fn sliced_and_full_sets_agree_on_generated_sets() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::BTreeSet::new();
    for set in 0..12 {
        let p = random_set(&mut rng, 10 + set * 4);
        for _ in 0..400 {
            let i = request(&mut rng);
            assert_same(&p, &i, &format!("set {set}"));
            if let Ok(d) = p.decide_full(&i) {
                seen.insert((format!("{:?}", d.effect), d.errors.is_empty()));
            }
        }
    }
    // The generated cases reach every effect, with and without errors.
    for effect in ["Allow", "Deny", "Approval"] {
        assert!(
            seen.contains(&(effect.to_string(), true)),
            "{effect}: {seen:?}"
        );
    }
    assert!(seen.iter().any(|(_, clean)| !clean), "{seen:?}");
}

#[test]
fn sliced_and_full_sets_agree_on_the_examples_and_the_bench_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sets = [
        super::tests::examples(),
        Policies::load(&[root.join("bench/policy")]).expect("bench/policy loads"),
    ];
    let mut rng = Rng(7);
    for p in &sets {
        for _ in 0..1500 {
            let mut i = request(&mut rng);
            i.server = rng.pick(&["crm", "files", "db", "shell", "s1"]).to_string();
            if i.method == "tools/call" {
                i.target = Some(
                    rng.pick(&[
                        "lookup_customer",
                        "read_file",
                        "query",
                        "run_command",
                        "export_customers",
                    ])
                    .to_string(),
                );
            }
            assert_same(p, &i, "examples/bench");
        }
    }
}
