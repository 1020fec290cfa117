//! What a policy decision is about, and its Cedar form: principal, action,
//! resource and context, built the same way for the live proxy and for
//! `policy explain` (so the two cannot disagree).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    str::FromStr,
};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::Value;

use super::PolicyError;

/// One question to the policy: who, which method on what, with what.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub subject: String,
    pub groups: Vec<String>,
    pub auth_method: String,
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// The server: the port rule's name, else its port.
    pub server: String,
    pub server_address: String,
    pub server_port: u16,
    pub method: String,
    /// Tool name, resource URI or prompt name (by method).
    pub target: Option<String>,
    pub arguments: Option<Value>,
    pub client_name: String,
    pub client_version: String,
    pub source_ip: IpAddr,
    pub session_id: String,
    pub transport: String,
    /// Unix seconds.
    pub time: i64,
    pub grants: Vec<String>,
    pub listing: bool,
}

impl Input {
    /// The Cedar action for this method.
    pub fn action(&self) -> &str {
        match self.method.as_str() {
            m if super::ACTIONS.contains(&m) => m,
            // Vendor methods: policies can still name them via
            // `context.method`.
            _ => "other",
        }
    }
}

/// The schema's entity types, parsed once: `EntityTypeName::from_str` runs
/// Cedar's parser, which cost more than the rest of building a request.
struct Types {
    user: EntityTypeName,
    group: EntityTypeName,
    server: EntityTypeName,
    tool: EntityTypeName,
    prompt: EntityTypeName,
    resource: EntityTypeName,
    action: EntityTypeName,
}

static TYPES: std::sync::LazyLock<Types> = std::sync::LazyLock::new(|| {
    let t = |n: &str| EntityTypeName::from_str(n).expect("a schema type name parses");
    Types {
        user: t("Mcp::User"),
        group: t("Mcp::Group"),
        server: t("Mcp::Server"),
        tool: t("Mcp::Tool"),
        prompt: t("Mcp::Prompt"),
        resource: t("Mcp::Resource"),
        action: t("Mcp::Action"),
    }
});

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn s(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_string())
}

fn set(items: impl IntoIterator<Item = String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(RestrictedExpression::new_string))
}

/// Principal, its groups, the resource and its server, as entity uids:
/// what policy scopes are matched against.
#[derive(Debug, Clone)]
pub struct Scope {
    pub principal: EntityUid,
    /// Sorted by text, without repeats.
    pub groups: Vec<EntityUid>,
    pub resource: EntityUid,
    pub server: EntityUid,
    /// The resource URI as policy judges it (resources/* only).
    uri: Option<String>,
}

pub fn scope_uids(input: &Input) -> Result<Scope, PolicyError> {
    // Issuer and subject: "alice" of another issuer, or a certificate CN
    // "alice", is another principal (see `principal_key`).
    let principal = uid(
        &TYPES.user,
        &crate::identity::principal_key(&input.issuer, &input.subject),
    );
    let mut names: Vec<&str> = input.groups.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let groups = names.into_iter().map(|g| uid(&TYPES.group, g)).collect();
    let server = uid(&TYPES.server, &input.server);
    let target = input.target.as_deref().unwrap_or_default();
    let mut uri = None;
    let resource = match input.action() {
        "tools/call" => uid(&TYPES.tool, target),
        "prompts/get" => uid(&TYPES.prompt, target),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let u = resource_uri(target)?;
            let r = uid(&TYPES.resource, &u);
            uri = Some(u);
            r
        }
        _ => server.clone(),
    };
    Ok(Scope {
        principal,
        groups,
        resource,
        server,
        uri,
    })
}

/// The request and the entities it needs.
pub fn cedar(input: &Input) -> Result<(Request, Entities), PolicyError> {
    cedar_in(input, scope_uids(input)?)
}

/// `cedar` with the scope already worked out (the decision needs it first,
/// to pick the policies).
pub fn cedar_in(input: &Input, scope: Scope) -> Result<(Request, Entities), PolicyError> {
    let err = |e: &dyn std::fmt::Display| PolicyError::Input(e.to_string());
    let Scope {
        principal,
        groups,
        resource,
        server,
        uri,
    } = scope;
    // Groups have no attributes, so they need no entity: `principal in
    // Mcp::Group::"x"` reads the principal's parents. Fewer entities make
    // Cedar's transitive closure (run for every request) cheaper.
    let mut entities = Vec::with_capacity(3);
    let user_attrs = HashMap::from([
        ("auth_method".to_string(), s(&input.auth_method)),
        ("issuer".to_string(), s(&input.issuer)),
        ("subject".to_string(), s(&input.subject)),
        ("client_id".to_string(), s(&input.client_id)),
        ("scopes".to_string(), set(input.scopes.iter().cloned())),
    ]);
    let groups: HashSet<EntityUid> = groups.into_iter().collect();
    entities.push(Entity::new(principal.clone(), user_attrs, groups).map_err(|e| err(&e))?);
    let server_attrs = HashMap::from([
        ("address".to_string(), s(&input.server_address)),
        (
            "port".to_string(),
            RestrictedExpression::new_long(i64::from(input.server_port)),
        ),
    ]);
    entities.push(Entity::new(server.clone(), server_attrs, HashSet::new()).map_err(|e| err(&e))?);
    let action = input.action();
    let target = input.target.as_deref().unwrap_or_default();
    let tags = || -> Result<HashMap<String, RestrictedExpression>, PolicyError> {
        let mut t = HashMap::new();
        if let Some(a) = &input.arguments {
            flatten("", a, &mut t)?;
        }
        Ok(t)
    };
    let parents = HashSet::from([server.clone()]);
    match action {
        "tools/call" | "prompts/get" => {
            let attrs = HashMap::from([("name".to_string(), s(target))]);
            entities.push(
                Entity::new_with_tags(resource.clone(), attrs, parents, tags()?)
                    .map_err(|e| err(&e))?,
            );
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let attrs = HashMap::from([("uri".to_string(), s(&uri.unwrap_or_default()))]);
            entities.push(Entity::new(resource.clone(), attrs, parents).map_err(|e| err(&e))?);
        }
        _ => {}
    }
    let action_uid = uid(&TYPES.action, action);
    let (hour, weekday) = hour_weekday(input.time);
    let args_json = input
        .arguments
        .as_ref()
        .map(crate::mcp::jsonrpc::canonical)
        .unwrap_or_default();
    let context = Context::from_pairs([
        ("method".to_string(), s(&input.method)),
        (
            "client".to_string(),
            RestrictedExpression::new_record([
                ("name".to_string(), s(&input.client_name)),
                ("version".to_string(), s(&input.client_version)),
            ])
            .map_err(|e| err(&e))?,
        ),
        ("source_ip".to_string(), ip_expr(input.source_ip)),
        ("auth_method".to_string(), s(&input.auth_method)),
        ("session_id".to_string(), s(&input.session_id)),
        ("transport".to_string(), s(&input.transport)),
        (
            "time".to_string(),
            RestrictedExpression::new_record([
                (
                    "unix".to_string(),
                    RestrictedExpression::new_long(input.time),
                ),
                ("hour".to_string(), RestrictedExpression::new_long(hour)),
                (
                    "weekday".to_string(),
                    RestrictedExpression::new_long(weekday),
                ),
            ])
            .map_err(|e| err(&e))?,
        ),
        ("grants".to_string(), set(input.grants.iter().cloned())),
        ("arguments_json".to_string(), s(&args_json)),
        (
            "sql_kinds".to_string(),
            set(input.arguments.as_ref().map(sql_kinds).unwrap_or_default()),
        ),
        (
            "listing".to_string(),
            RestrictedExpression::new_bool(input.listing),
        ),
    ])
    .map_err(|e| err(&e))?;
    let request =
        Request::new(principal, action_uid, resource, context, None).map_err(|e| err(&e))?;
    let entities = Entities::from_entities(entities, None).map_err(|e| err(&e))?;
    Ok((request, entities))
}

/// `ip("...")` for a source address. `RestrictedExpression::new_ip` runs
/// Cedar's parser on the name `ip` every time, which cost more than the
/// rest of the context; callers' addresses repeat, so each thread keeps
/// the expressions it built (bounded).
fn ip_expr(ip: IpAddr) -> RestrictedExpression {
    const KEEP: usize = 1024;
    thread_local! {
        static BUILT: std::cell::RefCell<HashMap<IpAddr, RestrictedExpression>> =
            std::cell::RefCell::new(HashMap::new());
    }
    BUILT.with_borrow_mut(|built| {
        if let Some(e) = built.get(&ip) {
            return e.clone();
        }
        if built.len() >= KEEP {
            built.clear();
        }
        let e = RestrictedExpression::new_ip(ip.to_string());
        built.insert(ip, e.clone());
        e
    })
}

/// Hour (0-23) and ISO weekday (1 = Monday) in UTC.
fn hour_weekday(unix: i64) -> (i64, i64) {
    let days = unix.div_euclid(86_400);
    let hour = unix.rem_euclid(86_400) / 3600;
    // 1970-01-01 was a Thursday (4).
    let weekday = (days + 3).rem_euclid(7) + 1;
    (hour, weekday)
}

/// Arguments as tags: dotted paths to string values. Two arguments that
/// flatten to one tag (`{"a.b": 1, "a": {"b": 2}}`, or an empty key) are
/// refused: whichever won, a policy would judge a value the server may not
/// use.
fn flatten(
    prefix: &str,
    v: &Value,
    out: &mut HashMap<String, RestrictedExpression>,
) -> Result<(), PolicyError> {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let mut put = |value: String| {
        if out
            .insert(prefix.to_string(), RestrictedExpression::new_string(value))
            .is_some()
        {
            return Err(PolicyError::Input(format!(
                "two arguments flatten to the same name {prefix:?}; rename one \
                 (argument names may not be empty or collide through dots)"
            )));
        }
        Ok(())
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k), v, out)?;
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out)?;
            }
        }
        Value::String(s) if !prefix.is_empty() => put(path_tag(prefix, s)?)?,
        Value::Null => {}
        other if !prefix.is_empty() => put(other.to_string())?,
        _ => {}
    }
    Ok(())
}

/// The tag value of a string argument. A plain absolute path is normalized
/// (a prefix check must see where `..` leads). A string that is more than a
/// path (spaces, shell operators, control characters) keeps its raw text,
/// so a substring guard still sees all of it; if such a string also walks
/// up with `..`, neither form is safe for both kinds of guard, and it is
/// refused.
fn path_tag(name: &str, s: &str) -> Result<String, PolicyError> {
    let path = s.strip_prefix("file://").unwrap_or(s);
    if !path.starts_with('/') {
        return Ok(s.to_string());
    }
    let plain = !path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "|;&$<>`()'\"\\".contains(c));
    if plain {
        return Ok(normalize(s));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err(PolicyError::Input(format!(
            "argument {name:?} is an absolute path with \"..\" and spaces or shell \
             characters; refused because policy cannot judge it both as a path \
             and as text"
        )));
    }
    Ok(s.to_string())
}

/// Absolute paths (and `file://` URIs) resolved lexically, so `..` cannot
/// walk out of a prefix a policy checks with `like "/srv/data/*"`.
pub fn normalize(s: &str) -> String {
    let (scheme, path) = match s.strip_prefix("file://") {
        Some(p) => ("file://", p),
        None => ("", s),
    };
    if !path.starts_with('/') {
        return s.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let trailing = if path.ends_with('/') && !parts.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{scheme}/{}{trailing}", parts.join("/"))
}

/// A resource URI as policy sees it: percent-escapes decoded once (as the
/// server will), the scheme lowercased, and for a hierarchical URI
/// (`scheme://authority/path`) the path resolved lexically like an
/// argument path. So `file:///srv/data/%2e%2e/..%2fetc/passwd` is judged as
/// `file:///etc/passwd`. Control characters (NUL included) and escapes that
/// do not decode to UTF-8 are refused.
pub fn resource_uri(uri: &str) -> Result<String, PolicyError> {
    let bad = |why: &str| PolicyError::Input(format!("resource URI {uri:?} {why}"));
    let decoded = percent_decode(uri).ok_or_else(|| bad("has an escape that is not UTF-8"))?;
    if decoded.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    let Some((scheme, rest)) = decoded.split_once("://") else {
        return Ok(decoded);
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Ok(decoded);
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (path, tail) = path.split_at(path.find(['?', '#']).unwrap_or(path.len()));
    let path = if path.is_empty() {
        String::new()
    } else {
        normalize(path)
    };
    Ok(format!(
        "{}://{authority}{path}{tail}",
        scheme.to_ascii_lowercase()
    ))
}

/// One pass of `%XX` decoding; `None` if the bytes are not UTF-8. A `%`
/// not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

const SQL_KEYWORDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "upsert",
    "replace",
    "create",
    "alter",
    "drop",
    "truncate",
    "rename",
    "grant",
    "revoke",
    "with",
    "explain",
    "show",
    "describe",
    "pragma",
    "attach",
    "detach",
    "copy",
    "call",
    "exec",
    "execute",
    "set",
    "begin",
    "commit",
    "rollback",
    "vacuum",
    "analyze",
    "do",
    "lock",
    "load",
    "prepare",
    "declare",
    "listen",
    "notify",
    "reindex",
    "cluster",
    "comment",
    "security",
    "import",
    "refresh",
    "reset",
    "savepoint",
    "release",
    "start",
    "end",
    "abort",
    "use",
    "values",
    "table",
    "discard",
];

/// Words that mark a statement as SQL wherever they appear in it: what a
/// statement with an unknown first word is judged by.
const SQL_MARKERS: &[&str] = &[
    "select", "insert", "update", "delete", "drop", "create", "alter", "truncate", "grant",
    "revoke", "exec", "execute", "begin", "commit", "perform", "into", "from", "table",
];

/// The first keyword of every SQL statement in any string argument (after
/// comments), lowercased. `SELECT 1; DROP TABLE t` gives {select, drop}.
///
/// A statement whose first word is not a known keyword but which carries
/// SQL words elsewhere (`FOO $$ ... EXECUTE 'DROP ...' $$`) gives "other",
/// so a policy that lists the kinds it allows refuses it. Plain prose with
/// no SQL words gives nothing; prose that happens to contain one may give
/// "other": for a guard on a database tool, that errs towards refusing.
pub fn sql_kinds(args: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut strings = Vec::new();
    collect_strings(args, &mut strings);
    for text in strings {
        for stmt in strip_sql_comments(text).split(';') {
            let first: String = stmt
                .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect::<String>()
                .to_ascii_lowercase();
            if SQL_KEYWORDS.contains(&first.as_str()) {
                out.insert(first);
            } else if stmt
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|w| SQL_MARKERS.iter().any(|m| w.eq_ignore_ascii_case(m)))
            {
                out.insert("other".to_string());
            }
        }
    }
    out
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Removes `-- line` and `/* block */` comments (not inside quotes: a
/// comment marker in a string literal is left, which can only add kinds).
fn strip_sql_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let (mut i, mut quote) = (0, None::<u8>);
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c as char);
                i += 1;
            }
            None if c == b'\'' || c == b'"' => {
                quote = Some(c);
                out.push(c as char);
                i += 1;
            }
            None if c == b'-' && b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            None if c == b'/' && b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
                out.push(' ');
            }
            None => {
                // Keep multi-byte characters whole.
                let ch = s[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}
