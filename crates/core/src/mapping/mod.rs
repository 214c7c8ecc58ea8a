//! Mapping: turns one source [`Record`] into the input [`Fields`] of a target action.
//!
//! A [`MappingSpec`] (the `[mapping]` table of a flow file) is compiled once into a [`Mapping`],
//! which then applies to each record with no I/O and no clock: `now` is passed in, so the same
//! record always maps to the same fields (fixture tests rely on it).
//!
//! Expressions are minijinja expressions in strict-undefined mode. Their context: every source
//! field at top level, then `record` (the whole fields object), `id`, `updated_at`, `deleted` and
//! `now`, which win over source fields of the same name. Project filters: `e164`, `first_name`,
//! `last_name`, `join_name`, `date`, `lookup`, `digits`, and `trim`/`lower`/`upper` that keep
//! `none` as `none` (see `filters.rs`). A field whose name is not an identifier is read as
//! `record["first name"]`.
//!
//! Errors carry byte spans of the flow file: the string's span from `toml::Spanned`, narrowed to
//! the offending token when the string has no escapes (see `content_start`).
//!
//! Output rules: a `none` result omits the field (or takes its `defaults` entry); `custom.<name>`
//! targets are gathered under `{"custom_fields": {"<name>": value}}` for the connector to resolve names;
//! `tags` is the sorted, deduplicated union of the `tags` field, the `tags` rules and `tags_from`.

mod filters;
mod jq;
mod scan;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{Environment, ErrorKind, Expression, UndefinedBehavior};
use serde::Deserialize;
use tether_abi::{Fields, Record};
use toml::Spanned;

use crate::config::{ConfigError, SourceMap};

/// The `[mapping]` table of a flow file, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// Target field → expression. `custom.<name>` addresses a custom field by name.
    #[serde(default)]
    pub fields: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Tags added when their condition holds.
    #[serde(default)]
    pub tags: Vec<TagRule>,
    /// An expression yielding a list of tags (or one tag).
    #[serde(default)]
    pub tags_from: Option<Spanned<String>>,
    /// Named tables for the `lookup` filter: table → key → value.
    #[serde(default)]
    pub lookups: BTreeMap<Spanned<String>, BTreeMap<String, toml::Value>>,
    /// Target field → constant, used when the field's expression yields `none` or is absent.
    #[serde(default)]
    pub defaults: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// A jq filter run on the source fields before the expressions; it must yield one object.
    #[serde(default)]
    pub jq: Option<Spanned<String>>,
}

/// `{ tag = "vip", when = "<expression>" }`; without `when` the tag is always added.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRule {
    pub tag: Spanned<String>,
    #[serde(default)]
    pub when: Option<Spanned<String>>,
}

/// What the loader knows when compiling a mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingOptions {
    /// Region for phone numbers written without a country code ("PT", "AU", "US").
    pub default_region: Option<String>,
    /// The source stream's fields, when its manifest lists them: other names do not compile.
    pub source_fields: Option<Vec<String>>,
}

/// A problem found while compiling a mapping; `span` is a byte range of the flow file's text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct MappingError {
    pub span: Option<Range<usize>>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl MappingError {
    fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        MappingError {
            span,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Locates the error in the flow file it came from (file:line:col).
    pub fn locate(&self, source: &SourceMap<'_>) -> ConfigError {
        let mut error = source.error(self.span.clone(), self.message.clone());
        error.hint = self.hint.clone();
        error
    }
}

/// Why one record could not be mapped; the record goes to the dead-letter list with this.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mapping `{field}`{}: {reason}", expression.as_ref().map(|e| format!(" = `{e}`")).unwrap_or_default())]
pub struct ApplyError {
    /// The target field (`tags[vip]` for a tag rule, `tags_from`, `jq`).
    pub field: String,
    /// The expression that failed, as written.
    pub expression: Option<String>,
    pub reason: String,
}

/// Where `custom.<name>` targets are gathered, by name: the key connectors (GHL, MLOFLO) read.
pub const CUSTOM_FIELDS: &str = "custom_fields";

/// Names the expressions see besides the source fields.
const RESERVED: &[&str] = &["record", "id", "updated_at", "deleted", "now"];

/// Where a target value goes in the output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Top(String),
    Custom(String),
    Tags,
}

impl Target {
    fn parse(name: &str) -> Result<Target, String> {
        if name.trim().is_empty() {
            return Err("a target field name is empty".into());
        }
        if name == "tags" {
            return Ok(Target::Tags);
        }
        match name.split_once('.') {
            Some(("custom", custom)) if custom.trim().is_empty() => {
                Err(format!("`{name}` names no custom field (write custom.<field name>)"))
            }
            Some(("custom", custom)) => Ok(Target::Custom(custom.to_owned())),
            _ => Ok(Target::Top(name.to_owned())),
        }
    }
}

/// One compiled expression: its index in the compiled list and what error messages need.
#[derive(Debug)]
struct ExprRef {
    index: usize,
    source: String,
    /// Variable paths it reads (`email`, `record.address.city`), to name the missing one.
    paths: Vec<String>,
}

type Exprs<'env> = Vec<Expression<'env, 'static>>;

self_cell::self_cell!(
    /// The environment (filters, lookup tables) and the expressions compiled against it.
    struct Compiled {
        owner: Environment<'static>,
        #[covariant]
        dependent: Exprs,
    }
);

/// A compiled mapping, applied per record. `Send + Sync`: one instance serves every worker.
pub struct Mapping {
    compiled: Compiled,
    fields: Vec<(Target, String, ExprRef)>,
    tags: Vec<(String, Option<ExprRef>)>,
    tags_from: Option<ExprRef>,
    defaults: Vec<(Target, serde_json::Value)>,
    jq: Option<jq::Jq>,
    /// Declared source fields that a record may omit: they read as `none`, not undefined.
    declared: Vec<String>,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("fields", &self.fields)
            .field("tags", &self.tags)
            .field("tags_from", &self.tags_from)
            .field("defaults", &self.defaults)
            .field("jq", &self.jq.is_some())
            .finish_non_exhaustive()
    }
}

/// Byte offset of a string's content inside its TOML span: `Spanned` covers the quotes, and
/// minijinja reports positions in the content. Exact for strings without escapes; otherwise the
/// error points at the opening quote.
fn content_start(span: &Range<usize>, content: &str) -> Option<usize> {
    match span.len().checked_sub(content.len()) {
        Some(2) => Some(span.start + 1), // "..." or '...'
        Some(6) => Some(span.start + 3), // """...""" or '''...'''
        Some(7) => Some(span.start + 4), // """\n...""": the first newline is trimmed
        Some(8) => Some(span.start + 5), // """\r\n..."""
        _ => None,
    }
}

fn inner_span(spanned: &Spanned<String>, inner: &Range<usize>) -> Range<usize> {
    let span = spanned.span();
    match content_start(&span, spanned.get_ref()) {
        Some(start) => start + inner.start..start + inner.end,
        None => span,
    }
}

fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items.iter().map(toml_to_json).collect(),
        toml::Value::Table(table) => table.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect(),
    }
}

/// The closest candidate by edit distance, if close enough to be a likely typo.
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    candidates
        .into_iter()
        .map(|c| (distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| {
            // A near spelling, or one name inside the other (`uppercase` for `upper`).
            let (a, b) = (name.to_lowercase(), c.to_lowercase());
            *d <= 2.max(c.chars().count() / 3) || (a.len().min(b.len()) >= 3 && (a.contains(&b) || b.contains(&a)))
        })
        .min()
        .map(|(_, c)| c)
}

/// What an expression is for, to name it in errors.
enum Role {
    Field(Target, String),
    Tag(String),
    TagsFrom,
}

struct Checker<'a> {
    env: &'a Environment<'static>,
    options: &'a MappingOptions,
    tables: &'a filters::Tables,
    jq: bool,
    globals: BTreeSet<String>,
    known: HashMap<(bool, String), bool>,
}

impl Checker<'_> {
    /// Whether the environment has this filter (or test): minijinja only says so at run time, so
    /// a probe expression is evaluated once per name.
    fn exists(&mut self, test: bool, name: &str) -> bool {
        let env = self.env;
        *self.known.entry((test, name.to_owned())).or_insert_with(|| {
            let probe = if test {
                format!("none is {name}")
            } else {
                format!("none | {name}")
            };
            let missing = if test {
                ErrorKind::UnknownTest
            } else {
                ErrorKind::UnknownFilter
            };
            match env.compile_expression(&probe) {
                Ok(expr) => !matches!(expr.eval(()), Err(e) if e.kind() == missing),
                Err(_) => false,
            }
        })
    }

    /// Compile-time checks of one compiled expression. Returns the variable paths it reads.
    fn check(
        &mut self,
        text: &Spanned<String>,
        expr: &Expression<'_, '_>,
        errors: &mut Vec<MappingError>,
    ) -> Vec<String> {
        let source = text.get_ref();
        let scan = scan::scan(source);
        let at = |r: &Range<usize>| Some(inner_span(text, r));

        for call in &scan.filters {
            if !self.exists(false, &call.name) {
                let mut error = MappingError::new(at(&call.at), format!("unknown filter `{}`", call.name));
                let project = [
                    "e164",
                    "first_name",
                    "last_name",
                    "join_name",
                    "date",
                    "lookup",
                    "digits",
                    "trim",
                    "lower",
                    "upper",
                    "default",
                ];
                if let Some(near) = closest(&call.name, project) {
                    error = error.hint(format!("did you mean `{near}`?"));
                }
                errors.push(error);
                continue;
            }
            let literal = call.literal.as_ref();
            match call.name.as_str() {
                "e164" => match literal {
                    Some((region, r)) => {
                        if let Err(e) = filters::parse_region(region) {
                            errors.push(MappingError::new(at(r), e));
                        }
                    }
                    // An invalid default_region is reported once, on its own.
                    None if call.args == 0 && self.options.default_region.is_none() => errors.push(
                        MappingError::new(at(&call.at), "`e164` has no region for numbers without a country code")
                            .hint("write e164(\"PT\") or set default_region"),
                    ),
                    None => {}
                },
                "lookup" => match literal {
                    Some((table, r)) if !self.tables.contains_key(table) => {
                        let mut error = MappingError::new(at(r), format!("unknown lookup table `{table}`"));
                        let names = self.tables.keys().map(String::as_str);
                        error = match closest(table, names) {
                            Some(near) => error.hint(format!("did you mean `{near}`?")),
                            None if self.tables.is_empty() => error.hint("define it under [mapping.lookups]"),
                            None => error.hint(format!(
                                "tables: {}",
                                self.tables.keys().cloned().collect::<Vec<_>>().join(", ")
                            )),
                        };
                        errors.push(error);
                    }
                    None if call.args == 0 => errors
                        .push(MappingError::new(at(&call.at), "`lookup` needs a table name").hint("lookup(\"table\")")),
                    _ => {}
                },
                "date" => {
                    if let Some((format, r)) = literal {
                        if !filters::valid_date_format(format) {
                            errors.push(
                                MappingError::new(at(r), format!("`{format}` is not a valid date format"))
                                    .hint("strftime specifiers, like \"%d/%m/%Y %H:%M\""),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        for (name, r) in &scan.tests {
            if !self.exists(true, name) {
                errors.push(MappingError::new(at(r), format!("unknown test `{name}`")));
            }
        }

        let names = expr.undeclared_variables(false);
        let mut paths: Vec<String> = expr.undeclared_variables(true).into_iter().collect();
        paths.sort();
        // After jq the record's shape is the filter's output: names are checked per record.
        if let (Some(fields), false) = (&self.options.source_fields, self.jq) {
            let mut unknown: Vec<&String> = names
                .iter()
                .filter(|n| !RESERVED.contains(&n.as_str()) && !self.globals.contains(*n) && !fields.contains(n))
                .collect();
            unknown.sort();
            for name in unknown {
                let place = scan.variables.iter().find(|(v, _)| v == name).map(|(_, r)| r);
                errors.push(self.unknown_field(name, place.and_then(at).or(Some(text.span())), fields));
            }
            for path in &paths {
                if let Some(field) = path.strip_prefix("record.").map(|p| p.split('.').next().unwrap_or(p)) {
                    if !fields.iter().any(|f| f == field) {
                        let place = source.find(field).map(|s| s..s + field.len());
                        errors.push(self.unknown_field(
                            field,
                            place.as_ref().and_then(at).or(Some(text.span())),
                            fields,
                        ));
                    }
                }
            }
        }
        paths
    }

    fn unknown_field(&self, name: &str, span: Option<Range<usize>>, fields: &[String]) -> MappingError {
        let error = MappingError::new(span, format!("unknown source field `{name}`"));
        match closest(name, fields.iter().map(String::as_str)) {
            Some(near) => error.hint(format!("did you mean `{near}`?")),
            None => error.hint(format!("the source has: {}", fields.join(", "))),
        }
    }
}

impl Mapping {
    /// Compiles a spec, reporting every problem at once.
    pub fn compile(spec: &MappingSpec, options: &MappingOptions) -> Result<Mapping, Vec<MappingError>> {
        let mut errors = Vec::new();

        let default_region = match options.default_region.as_deref().map(filters::parse_region) {
            Some(Ok(region)) => Some(region),
            Some(Err(e)) => {
                errors.push(MappingError::new(None, format!("default_region: {e}")));
                None
            }
            None => None,
        };
        let tables: filters::Tables = spec
            .lookups
            .iter()
            .map(|(name, rows)| {
                let rows = rows.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect();
                (name.get_ref().clone(), rows)
            })
            .collect();
        let tables = Arc::new(tables);

        let jq = spec.jq.as_ref().and_then(|code| match jq::Jq::compile(code.get_ref()) {
            Ok(jq) => Some(jq),
            Err(problems) => {
                errors.extend(problems.into_iter().map(|p| {
                    let span = p.range.map_or(code.span(), |r| inner_span(code, &r));
                    MappingError::new(Some(span), p.message)
                }));
                None
            }
        });

        // Every expression with what it is for, in a stable order.
        let mut entries: Vec<(Role, &Spanned<String>)> = Vec::new();
        let mut has_custom = None;
        let mut has_plain_custom = None;
        for (target, expr) in &spec.fields {
            match Target::parse(target.get_ref()) {
                Ok(parsed) => {
                    match &parsed {
                        Target::Custom(_) => has_custom = Some(target.span()),
                        Target::Top(name) if name == CUSTOM_FIELDS => has_plain_custom = Some(target.span()),
                        _ => {}
                    }
                    entries.push((Role::Field(parsed, target.get_ref().clone()), expr));
                }
                Err(e) => errors.push(MappingError::new(Some(target.span()), e)),
            }
        }
        if let (Some(_), Some(span)) = (has_custom, has_plain_custom) {
            errors.push(
                MappingError::new(
                    Some(span),
                    "`custom_fields` is set both whole and by `custom.<name>` fields",
                )
                .hint("use only custom.<name> targets"),
            );
        }
        for rule in &spec.tags {
            if rule.tag.get_ref().trim().is_empty() {
                errors.push(MappingError::new(Some(rule.tag.span()), "a tag is empty"));
            }
            if let Some(when) = &rule.when {
                entries.push((Role::Tag(rule.tag.get_ref().clone()), when));
            }
        }
        if let Some(from) = &spec.tags_from {
            entries.push((Role::TagsFrom, from));
        }

        let mut defaults = Vec::new();
        for (target, value) in &spec.defaults {
            match Target::parse(target.get_ref()) {
                Ok(parsed) => defaults.push((parsed, toml_to_json(value.get_ref()))),
                Err(e) => errors.push(MappingError::new(Some(target.span()), e)),
            }
        }

        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        filters::register(&mut env, Arc::clone(&tables), default_region);

        let mut paths = Vec::new();
        let compiled = Compiled::new(env, |env| {
            let mut checker = Checker {
                env,
                options,
                tables: &tables,
                jq: jq.is_some(),
                globals: env.globals().map(|(name, _)| name.to_owned()).collect(),
                known: HashMap::new(),
            };
            let mut exprs = Vec::new();
            for (_, text) in &entries {
                match env.compile_expression_owned(text.get_ref().clone()) {
                    Ok(expr) => {
                        paths.push(checker.check(text, &expr, &mut errors));
                        exprs.push(expr);
                    }
                    Err(e) => {
                        let span = e.range().map_or(text.span(), |r| inner_span(text, &r));
                        let message = e.detail().map_or(e.kind().to_string(), str::to_owned);
                        errors.push(MappingError::new(Some(span), format!("syntax error: {message}")));
                    }
                }
            }
            exprs
        });
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
            return Err(errors);
        }

        // No errors: every entry compiled, so entry i is expression i.
        let mut mapping = Mapping {
            compiled,
            fields: Vec::new(),
            tags: spec
                .tags
                .iter()
                .filter(|r| r.when.is_none())
                .map(|r| (r.tag.get_ref().clone(), None))
                .collect(),
            tags_from: None,
            defaults,
            jq,
            declared: options.source_fields.clone().unwrap_or_default(),
        };
        for (index, ((role, text), paths)) in entries.into_iter().zip(paths).enumerate() {
            let expr = ExprRef {
                index,
                source: text.get_ref().clone(),
                paths,
            };
            match role {
                Role::Field(target, name) => mapping.fields.push((target, name, expr)),
                Role::Tag(tag) => mapping.tags.push((tag, Some(expr))),
                Role::TagsFrom => mapping.tags_from = Some(expr),
            }
        }
        Ok(mapping)
    }

    /// Maps one record. `now` (RFC 3339) is what expressions see as `now`.
    pub fn apply(&self, record: &Record, now: &str) -> Result<Fields, ApplyError> {
        let source: Cow<'_, Fields> = match &self.jq {
            Some(jq) => Cow::Owned(jq.run(&record.fields).map_err(|reason| ApplyError {
                field: "jq".into(),
                expression: None,
                reason,
            })?),
            // Declared fields the record omits read as `none`, at top level and under `record`.
            None if self.declared.iter().any(|name| !record.fields.contains_key(name)) => {
                let mut fields = record.fields.clone();
                for name in &self.declared {
                    fields.entry(name.as_str()).or_insert(serde_json::Value::Null);
                }
                Cow::Owned(fields)
            }
            None => Cow::Borrowed(&record.fields),
        };

        let mut context: BTreeMap<String, Value> = BTreeMap::new();
        for (name, value) in source.iter() {
            context.insert(name.clone(), Value::from(Serde(value)));
        }
        context.insert("record".into(), Value::from(Serde(source.as_ref())));
        context.insert("id".into(), Value::from(record.id.as_str()));
        context.insert(
            "updated_at".into(),
            record.updated_at.as_deref().map_or(Value::from(()), Value::from),
        );
        context.insert("deleted".into(), Value::from(record.deleted));
        context.insert("now".into(), Value::from(now));
        let context = Value::from(context);

        let mut out = Fields::new();
        let mut custom = Fields::new();
        let mut tags = BTreeSet::new();
        let mut has_tags = false;

        for (target, name, expr) in &self.fields {
            let value = self.eval(expr, &context, name)?;
            if let Target::Tags = target {
                has_tags = true;
                collect_tags(&value, &mut tags).map_err(|reason| self.error(name, expr, reason))?;
                continue;
            }
            if value.is_none() {
                continue;
            }
            let json = serde_json::to_value(&value)
                .map_err(|e| self.error(name, expr, format!("the value cannot be written as JSON: {e}")))?;
            match target {
                Target::Top(field) => out.insert(field.clone(), json),
                Target::Custom(field) => custom.insert(field.clone(), json),
                Target::Tags => None,
            };
        }
        for (tag, when) in &self.tags {
            has_tags = true;
            let holds = match when {
                None => true,
                Some(expr) => self.eval(expr, &context, &format!("tags[{tag}]"))?.is_true(),
            };
            if holds {
                tags.insert(tag.trim().to_owned());
            }
        }
        if let Some(expr) = &self.tags_from {
            has_tags = true;
            let value = self.eval(expr, &context, "tags_from")?;
            collect_tags(&value, &mut tags).map_err(|reason| self.error("tags_from", expr, reason))?;
        }
        if has_tags && !tags.is_empty() {
            out.insert("tags".into(), tags.into_iter().map(serde_json::Value::from).collect());
        }

        for (target, value) in &self.defaults {
            let (map, key) = match target {
                Target::Top(field) => (&mut out, field.as_str()),
                Target::Custom(field) => (&mut custom, field.as_str()),
                Target::Tags => (&mut out, "tags"),
            };
            map.entry(key).or_insert_with(|| value.clone());
        }
        if !custom.is_empty() {
            out.insert(CUSTOM_FIELDS.into(), serde_json::Value::Object(custom));
        }
        Ok(out)
    }

    fn error(&self, field: &str, expr: &ExprRef, reason: String) -> ApplyError {
        ApplyError {
            field: field.to_owned(),
            expression: Some(expr.source.clone()),
            reason,
        }
    }

    /// Evaluates one expression; an undefined result is an error naming what is missing.
    fn eval(&self, expr: &ExprRef, context: &Value, field: &str) -> Result<Value, ApplyError> {
        let compiled = &self.compiled.borrow_dependent()[expr.index];
        let missing = || {
            let missing: Vec<&str> = expr
                .paths
                .iter()
                .filter(|path| !resolves(context, path))
                .map(String::as_str)
                .collect();
            match missing.as_slice() {
                [] => String::new(),
                names => format!(
                    " (this record has no {})",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            }
        };
        match compiled.eval(context.clone()) {
            Ok(value) if value.is_undefined() => Err(self.error(field, expr, format!("undefined value{}", missing()))),
            Ok(value) => Ok(value),
            Err(e) => {
                let reason = match (e.kind(), e.detail()) {
                    (ErrorKind::UndefinedError, detail) => {
                        format!("{}{}", detail.unwrap_or("undefined value"), missing())
                    }
                    (_, Some(detail)) => detail.to_owned(),
                    (kind, None) => kind.to_string(),
                };
                Err(self.error(field, expr, reason))
            }
        }
    }
}

/// Whether a dotted variable path resolves to a defined value in the context.
fn resolves(context: &Value, path: &str) -> bool {
    let mut value = context.clone();
    for part in path.split('.') {
        match value.get_attr(part) {
            Ok(next) if !next.is_undefined() => value = next,
            _ => return false,
        }
    }
    true
}

/// Adds the tags in a value: one string, a list of strings, or `none`; blanks are skipped.
fn collect_tags(value: &Value, tags: &mut BTreeSet<String>) -> Result<(), String> {
    let mut add = |item: &Value| match item.kind() {
        ValueKind::None => Ok(()),
        ValueKind::String | ValueKind::Number => {
            let tag = item.to_string();
            let tag = tag.trim();
            if !tag.is_empty() {
                tags.insert(tag.to_owned());
            }
            Ok(())
        }
        kind => Err(format!("a tag must be text, got a {kind}")),
    };
    match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => {
            let items = value.try_iter().map_err(|e| e.to_string())?;
            items.into_iter().try_for_each(|item| add(&item))
        }
        _ => add(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_shareable_across_workers() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Mapping>();
    }

    #[test]
    fn errors_locate_to_line_and_column_of_the_flow_file() {
        #[derive(Deserialize)]
        struct Flow {
            mapping: MappingSpec,
        }
        let text = "[mapping.fields]\nemail = \"emial | lower\"\nphone = '''\nphone | e16\n'''\n";
        let flow: Flow = toml::from_str(text).expect("valid TOML");
        let options = MappingOptions {
            default_region: Some("PT".into()),
            source_fields: Some(vec!["email".into(), "phone".into()]),
        };
        let errors = Mapping::compile(&flow.mapping, &options).expect_err("two errors");
        let source = SourceMap {
            file: std::path::Path::new("flows/contacts.toml"),
            text,
        };
        let located: Vec<String> = errors.iter().map(|e| e.locate(&source).to_string()).collect();
        assert_eq!(
            located,
            [
                "flows/contacts.toml:2:10: unknown source field `emial` (hint: did you mean `email`?)",
                "flows/contacts.toml:4:9: unknown filter `e16` (hint: did you mean `e164`?)",
            ]
        );
    }

    #[test]
    fn content_offsets_follow_toml_quoting() {
        assert_eq!(content_start(&(10..15), "abc"), Some(11));
        assert_eq!(content_start(&(10..19), "abc"), Some(13));
        assert_eq!(content_start(&(10..20), "abc"), Some(14));
        assert_eq!(content_start(&(10..17), "a\"b"), None);
    }

    #[test]
    fn closest_suggests_typos_only() {
        assert_eq!(closest("emial", ["email", "phone"]), Some("email"));
        assert_eq!(closest("zzzzzz", ["email", "phone"]), None);
    }
}
