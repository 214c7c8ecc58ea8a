//! The optional whole-record jq filter (jaq), run on the source fields before the expressions.

use std::ops::Range;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::{Num, Val};
use serde::Deserialize;
use tether_abi::Fields;

/// jq natives left out: a mapping must be deterministic and must not read the host's environment
/// (`env` would expose secrets to whatever the target stores).
const DENIED: &[&str] = &["env", "now"];

pub(super) struct Jq {
    filter: jaq_core::Filter<data::JustLut<Val>>,
}

/// A jq compile problem: where in the filter text (when known) and what.
pub(super) struct JqProblem {
    pub range: Option<Range<usize>>,
    pub message: String,
}

/// The byte range of `part` inside `whole`, if `part` is a slice of it (jaq reports errors as
/// slices; one from another file, which a mapping cannot have, must not be subtracted).
fn offset_of(whole: &str, part: &str) -> Option<Range<usize>> {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    (p >= w && p + part.len() <= w + whole.len()).then(|| jaq_core::load::span(whole, part))
}

impl Jq {
    pub(super) fn compile(code: &str) -> Result<Jq, Vec<JqProblem>> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs().filter(|(name, _, _)| !DENIED.contains(name)))
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let mut problems = Vec::new();
                for (_, error) in errors {
                    match error {
                        jaq_core::load::Error::Io(items) => {
                            problems.extend(items.into_iter().map(|(s, msg)| JqProblem {
                                range: offset_of(code, s),
                                message: msg,
                            }))
                        }
                        jaq_core::load::Error::Lex(items) => {
                            problems.extend(items.into_iter().map(|(expect, s)| JqProblem {
                                range: offset_of(code, s),
                                message: format!("jq syntax: expected {}", expect.as_str()),
                            }))
                        }
                        jaq_core::load::Error::Parse(items) => {
                            problems.extend(items.into_iter().map(|(expect, s)| JqProblem {
                                range: offset_of(code, s),
                                message: format!("jq syntax: expected {}", expect.as_str()),
                            }))
                        }
                    }
                }
                problems
            })?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errors| {
            errors
                .into_iter()
                .flat_map(|(_, items)| items)
                .map(|(name, undefined)| JqProblem {
                    range: offset_of(code, name),
                    message: format!("jq: undefined {} `{name}`", undefined.as_str()),
                })
                .collect::<Vec<_>>()
        })?;
        Ok(Jq { filter })
    }

    /// Runs the filter on the record's fields; it must yield exactly one object.
    pub(super) fn run(&self, fields: &Fields) -> Result<Fields, String> {
        let input = serde_json::Value::Object(fields.clone());
        let input = Val::deserialize(&input).map_err(|e| format!("cannot pass the record to jq: {e}"))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input)).map(unwrap_valr);
        let first = match outputs.next() {
            None => return Err("the jq filter produced no output (use `.` to keep the record)".into()),
            Some(Err(e)) => return Err(format!("jq: {e}")),
            Some(Ok(value)) => value,
        };
        if outputs.next().is_some() {
            return Err("the jq filter produced more than one output; it must produce one object".into());
        }
        match to_json(&first)? {
            serde_json::Value::Object(map) => Ok(map),
            other => Err(format!("the jq filter must produce an object, it produced {other}")),
        }
    }
}

/// jaq values are a superset of JSON (byte strings, NaN, non-string keys): convert what JSON can
/// hold and say what it cannot.
fn to_json(value: &Val) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        Val::Null => J::Null,
        Val::Bool(b) => J::Bool(*b),
        Val::Num(n) => {
            let text = n.to_string();
            let number = match n {
                Num::Int(i) => Some(serde_json::Number::from(*i as i64)),
                Num::Float(f) => serde_json::Number::from_f64(*f),
                _ => text.parse::<serde_json::Number>().ok(),
            };
            J::Number(number.ok_or_else(|| format!("the jq output has a number JSON cannot hold: {text}"))?)
        }
        Val::TStr(b) | Val::BStr(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(items) => J::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Val::Obj(map) => {
            let mut object = serde_json::Map::new();
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => return Err(format!("the jq output has an object key that is not text: {other}")),
                };
                object.insert(key, to_json(v)?);
            }
            J::Object(object)
        }
    })
}
