//! What a policy decision is about, and its Cedar form: principal, action,
//! resource and context, built the same way for the live proxy and for
//! `policy explain` (so the two cannot disagree).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    str::FromStr,
};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::Value;

use super::PolicyError;

mod process;
mod sql;
mod uri;

pub use process::ProcessContext;
pub use sql::sql_kinds;
pub use uri::normalize;

/// One question to the policy: who, which method on what, with what.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The caller's subject.
    pub subject: String,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// How the caller authenticated.
    pub auth_method: String,
    /// The token's issuer.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The caller's scopes.
    pub scopes: Vec<String>,
    /// The server: the port rule's name, else its port.
    pub server: String,
    /// The server's address.
    pub server_address: String,
    /// The server's port.
    pub server_port: u16,
    /// The JSON-RPC method.
    pub method: String,
    /// Tool name, resource URI or prompt name (by method).
    pub target: Option<String>,
    /// The call's arguments.
    pub arguments: Option<Value>,
    /// The client's name.
    pub client_name: String,
    /// The client's version.
    pub client_version: String,
    /// The client's IP address.
    pub source_ip: IpAddr,
    /// The MCP session id.
    pub session_id: String,
    /// The MCP transport.
    pub transport: String,
    /// Unix seconds.
    pub time: i64,
    /// The caller's standing grants.
    pub grants: Vec<String>,
    /// Whether the call is a listing.
    pub listing: bool,
    /// The same-host process that opened the connection
    /// (`context.process`); `None` for remote callers.
    pub process: Option<ProcessContext>,
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
    /// The caller's entity.
    pub principal: EntityUid,
    /// Sorted by text, without repeats.
    pub groups: Vec<EntityUid>,
    /// The tool, resource or prompt's entity.
    pub resource: EntityUid,
    /// The server's entity.
    pub server: EntityUid,
    /// The resource URI as policy judges it (resources/* only).
    uri: Option<String>,
}

/// The Cedar entity ids of a call's principal, resource and server.
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
        "tools/call" | "tasks/get" | "tasks/update" | "tasks/cancel" => uid(&TYPES.tool, target),
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
    // Groups have no attributes, so they need no entity: `principal in
    // Mcp::Group::"x"` reads the principal's parents. Fewer entities make
    // Cedar's transitive closure (run for every request) cheaper.
    let context = context(input, None)?;
    build(input, scope, true, context)
}

/// `cedar_in` with only the context fields `wanted` (see `context`).
pub(super) fn cedar_with(
    input: &Input,
    scope: Scope,
    wanted: &[String],
) -> Result<(Request, Entities), PolicyError> {
    let context = context(input, Some(wanted))?;
    build(input, scope, true, context)
}

/// The request and entities without what only the call carries (the
/// arguments as tags, the context): what the static part of a policy
/// (see `slice`) is evaluated against, once per caller and tool.
pub(super) fn cedar_static(
    input: &Input,
    scope: Scope,
) -> Result<(Request, Entities), PolicyError> {
    build(input, scope, false, Context::empty())
}

fn build(
    input: &Input,
    scope: Scope,
    tags: bool,
    context: Context,
) -> Result<(Request, Entities), PolicyError> {
    let mut entities = Vec::with_capacity(3);
    entities.push(user_entity(input, scope.principal.clone(), scope.groups)?);
    entities.push(server_entity(input, scope.server.clone())?);
    let resource = resource_entity(
        input,
        scope.resource.clone(),
        &scope.server,
        scope.uri,
        tags,
    )?;
    entities.extend(resource);
    let action_uid = uid(&TYPES.action, input.action());
    let request = Request::new(scope.principal, action_uid, scope.resource, context, None)
        .map_err(input_err)?;
    let entities = Entities::from_entities(entities, None).map_err(input_err)?;
    Ok((request, entities))
}

/// Refuses arguments policy could not judge (see `flatten`), as building
/// the request would, for a decision that needs no request.
pub(super) fn check_arguments(input: &Input) -> Result<(), PolicyError> {
    match (input.action(), &input.arguments) {
        ("tools/call" | "prompts/get" | "tasks/get" | "tasks/update" | "tasks/cancel", Some(a)) => {
            flatten("", a, &mut HashMap::new())
        }
        _ => Ok(()),
    }
}

/// A Cedar error while building the request: the input cannot be judged.
fn input_err(e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Input(e.to_string())
}

/// The caller: its identity attributes, its groups as parents.
fn user_entity(
    input: &Input,
    principal: EntityUid,
    groups: Vec<EntityUid>,
) -> Result<Entity, PolicyError> {
    let attrs = HashMap::from([
        ("auth_method".to_string(), s(&input.auth_method)),
        ("issuer".to_string(), s(&input.issuer)),
        ("subject".to_string(), s(&input.subject)),
        ("client_id".to_string(), s(&input.client_id)),
        ("scopes".to_string(), set(input.scopes.iter().cloned())),
    ]);
    let groups: HashSet<EntityUid> = groups.into_iter().collect();
    Entity::new(principal, attrs, groups).map_err(input_err)
}

/// The server the call goes to: its address and port.
fn server_entity(input: &Input, server: EntityUid) -> Result<Entity, PolicyError> {
    let attrs = HashMap::from([
        ("address".to_string(), s(&input.server_address)),
        (
            "port".to_string(),
            RestrictedExpression::new_long(i64::from(input.server_port)),
        ),
    ]);
    Entity::new(server, attrs, HashSet::new()).map_err(input_err)
}

/// The tool, prompt or resource called, under its server: a tool or
/// prompt carries its arguments as tags, a resource its URI. Other methods
/// name the server itself, which already has its entity.
fn resource_entity(
    input: &Input,
    resource: EntityUid,
    server: &EntityUid,
    uri: Option<String>,
    with_tags: bool,
) -> Result<Option<Entity>, PolicyError> {
    let parents = HashSet::from([server.clone()]);
    match input.action() {
        "tools/call" | "prompts/get" | "tasks/get" | "tasks/update" | "tasks/cancel" => {
            let target = input.target.as_deref().unwrap_or_default();
            let attrs = HashMap::from([("name".to_string(), s(target))]);
            let mut tags = HashMap::new();
            if let (Some(a), true) = (&input.arguments, with_tags) {
                flatten("", a, &mut tags)?;
            }
            Entity::new_with_tags(resource, attrs, parents, tags)
                .map(Some)
                .map_err(input_err)
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let attrs = HashMap::from([("uri".to_string(), s(&uri.unwrap_or_default()))]);
            Entity::new(resource, attrs, parents)
                .map(Some)
                .map_err(input_err)
        }
        _ => Ok(None),
    }
}

/// The request's context: method, client, source, session, time, grants
/// and the arguments as policy reads them (canonical JSON, SQL kinds).
/// Only the fields `wanted` names are built (all for `None`): the
/// policies a call evaluates read few of them, and the arguments' forms
/// cost more than the rest (see `slice`).
fn context(input: &Input, wanted: Option<&[String]>) -> Result<Context, PolicyError> {
    let want = |n: &str| wanted.is_none_or(|w| w.iter().any(|x| x == n));
    let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(11);
    let mut put = |n: &str, e: RestrictedExpression| pairs.push((n.to_string(), e));
    if want("method") {
        put("method", s(&input.method));
    }
    if want("client") {
        let client = RestrictedExpression::new_record([
            ("name".to_string(), s(&input.client_name)),
            ("version".to_string(), s(&input.client_version)),
        ])
        .map_err(input_err)?;
        put("client", client);
    }
    if want("source_ip") {
        put("source_ip", ip_expr(input.source_ip));
    }
    if want("auth_method") {
        put("auth_method", s(&input.auth_method));
    }
    if want("session_id") {
        put("session_id", s(&input.session_id));
    }
    if want("transport") {
        put("transport", s(&input.transport));
    }
    if want("time") {
        put("time", time(input.time)?);
    }
    if want("grants") {
        put("grants", set(input.grants.iter().cloned()));
    }
    if want("arguments_json") {
        let json = input.arguments.as_ref().map(crate::jsonrpc::canonical);
        put("arguments_json", s(&json.unwrap_or_default()));
    }
    if want("sql_kinds") {
        let kinds = input.arguments.as_ref().map(sql_kinds);
        put("sql_kinds", set(kinds.unwrap_or_default()));
    }
    if want("listing") {
        put("listing", RestrictedExpression::new_bool(input.listing));
    }
    // Same-host callers only: `context has process` tells them apart.
    if let Some(p) = input.process.as_ref().filter(|_| want("process")) {
        put("process", p.expr()?);
    }
    Context::from_pairs(pairs).map_err(input_err)
}

/// `context.time`: Unix seconds, hour and weekday.
fn time(unix: i64) -> Result<RestrictedExpression, PolicyError> {
    let (hour, weekday) = hour_weekday(unix);
    RestrictedExpression::new_record([
        ("unix".to_string(), RestrictedExpression::new_long(unix)),
        ("hour".to_string(), RestrictedExpression::new_long(hour)),
        (
            "weekday".to_string(),
            RestrictedExpression::new_long(weekday),
        ),
    ])
    .map_err(input_err)
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

/// The tag value of a string argument. A `file:` URI or a plain absolute
/// path is resolved the way a server resolves it (`uri::path_arg`), and
/// refused where servers could resolve it differently (escaped
/// delimiters, backslashes with dot segments). A string that is more than
/// a path (spaces, shell operators, control characters) keeps its raw
/// text, so a substring guard still sees all of it; if such a string also
/// walks up with `..` (under any reading) or has a backslash, neither form
/// is safe for both kinds of guard, and it is refused.
pub fn path_tag(name: &str, s: &str) -> Result<String, PolicyError> {
    let file = s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("file:"));
    let path = if file { &s[5..] } else { s };
    if !file && !uri::absolute(path) {
        return Ok(s.to_string());
    }
    let plain = !path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "|;&$<>`()'\"".contains(c));
    // Rooted in `\` or a drive letter: a Windows path, never a command.
    if plain || file || !path.starts_with('/') {
        return uri::path_arg(s)
            .map_err(|e| PolicyError::Input(format!("argument {name:?} {s:?} {e}; refused")));
    }
    if path.contains('\\') {
        return Err(PolicyError::Input(format!(
            "argument {name:?} is an absolute path with a backslash and spaces or \
             shell characters; refused because some servers read \\ as a path \
             separator and others as a character or an escape"
        )));
    }
    if uri::walks_up(path) {
        return Err(PolicyError::Input(format!(
            "argument {name:?} is an absolute path with \"..\" and spaces or shell \
             characters; refused because policy cannot judge it both as a path \
             and as text"
        )));
    }
    // Each word that is a path must read the same to a server that
    // decodes or normalizes it: `/./srv/;x` is /srv/;x to one of them.
    for word in path
        .split(char::is_whitespace)
        .filter(|w| w.starts_with('/'))
    {
        let unclear = uri::check_escapes(word, true).is_err()
            || word.contains("//")
            || word.split('/').any(|seg| seg == ".");
        if unclear {
            return Err(PolicyError::Input(format!(
                "argument {name:?} has a path {word:?} with \".\", \"//\" or an escaped \
                 delimiter besides spaces or shell characters; refused because servers \
                 that normalize or decode it would read another path"
            )));
        }
    }
    Ok(s.to_string())
}

/// A resource URI as policy sees it: parsed as WHATWG parsers do (scheme
/// lowercased, dot segments resolved), escapes decoded once. A URI that
/// servers could read differently (a backslash, an escaped delimiter or
/// dot segment, a control character) is refused; see `uri`.
pub fn resource_uri(u: &str) -> Result<String, PolicyError> {
    uri::resource_uri(u).map_err(|e| PolicyError::Input(format!("resource URI {u:?} {e}; refused")))
}
