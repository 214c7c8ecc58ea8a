//! The optional whole-record jq filter (jaq), run on the source fields before the expressions.
//!
//! jq is Turing-complete and jaq has no limits of its own: `def f: [f]; f` would overflow the
//! stack, which aborts the whole process, and `def f: f; f` (a tail call) would loop for ever.
//! So every run is bounded (see [`budget`]): the filter is compiled with a call to the native
//! `__tether_guard` at the start of every definition's body (the user's and the standard
//! library's, local ones included) and of every `reduce`/`foreach` step, and runs on a thread of
//! its own with a fixed stack. The guard fails the run past [`FUEL`] steps or once the thread has
//! used [`STACK_LIMIT`] of its stack; the failure is a jq error, so the record becomes a dead
//! letter naming it. Not bounded: the time and memory of one builtin call (`[range(1e18)]`).

use std::cell::Cell;
use std::ops::Range;

use jaq_core::box_iter::box_once;
use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::load::{Arena, File, Lexer, Loader, Parser};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Cv, Error, Exn, Native, ValXs, Vars};
use jaq_json::{Num, Val};
use serde::Deserialize;
use tether_abi::Fields;

type Data = data::JustLut<Val>;

/// Steps (definition calls and `reduce`/`foreach` iterations) one record may take.
pub(super) const FUEL: u64 = 200_000;
/// The stack of the thread a filter runs on.
const EVAL_STACK: usize = 256 << 20;
/// How much of it the filter's own recursion may use; the rest is headroom for what runs between
/// two guard calls (a builtin, dropping a deep value).
const STACK_LIMIT: usize = 64 << 20;
/// The guard's name, and the definition the user's filter becomes.
const GUARD: &str = "__tether_guard";
const MAIN: &str = "__tether_main";

/// jq natives left out: a mapping must be deterministic and must not read the host's environment
/// (`env` would expose secrets to whatever the target stores).
const DENIED: &[&str] = &["env", "now"];

pub(super) struct Jq {
    filter: jaq_core::Filter<Data>,
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
        let _checked: jaq_core::Filter<Data> =
            Compiler::default().with_funs(funs).compile(modules).map_err(|errors| {
                errors
                    .into_iter()
                    .flat_map(|(_, items)| items)
                    .map(|(name, undefined)| JqProblem {
                        range: offset_of(code, name),
                        message: format!("jq: undefined {} `{name}`", undefined.as_str()),
                    })
                    .collect::<Vec<_>>()
            })?;
        // It compiles as written: now the same program with the guard in every definition.
        Jq::compile_guarded(code).map_err(|message| vec![JqProblem { range: None, message }])
    }

    /// The filter as a definition `__tether_main` after the library, every definition guarded.
    fn compile_guarded(code: &str) -> Result<Jq, String> {
        let tokens = Lexer::new(code)
            .lex()
            .map_err(|_| "jq syntax: the filter cannot be read".to_owned())?;
        let mut main: Term<&str> = Parser::new(&tokens)
            .parse(|p| p.term())
            .map_err(|_| "jq: a mapping's filter is one jq program, without modules".to_owned())?;
        guard_term(&mut main);
        let mut prelude: Vec<Def<&str>> = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .collect();
        for def in &mut prelude {
            guard_def(def);
        }
        prelude.push(Def {
            name: MAIN,
            args: Vec::new(),
            body: main,
        });
        let funs = jaq_core::funs()
            .chain(jaq_std::funs().filter(|(name, _, _)| !DENIED.contains(name)))
            .chain(jaq_json::funs())
            .chain([(GUARD, jaq_core::native::v(0), guard_native())]);
        let arena = Arena::default();
        let modules = Loader::new(prelude)
            .load(&arena, File { code: MAIN, path: () })
            .map_err(|_| "jq: the guarded filter does not load".to_owned())?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|_| "jq: the guarded filter does not compile".to_owned())?;
        Ok(Jq { filter })
    }

    /// Runs the filter on the record's fields, on a thread of its own within the budget; it must
    /// yield exactly one object.
    pub(super) fn run(&self, fields: &Fields) -> Result<Fields, String> {
        std::thread::scope(|scope| {
            let evaluation = std::thread::Builder::new()
                .name("tether-jq".into())
                .stack_size(EVAL_STACK)
                .spawn_scoped(scope, || {
                    budget::start();
                    self.run_here(fields)
                });
            match evaluation {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err("the jq filter failed inside jaq (a panic)".into())),
                Err(e) => Err(format!("cannot start a thread for the jq filter: {e}")),
            }
        })
    }

    fn run_here(&self, fields: &Fields) -> Result<Fields, String> {
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
        match to_json(&first, 0)? {
            serde_json::Value::Object(map) => Ok(map),
            other => Err(format!("the jq filter must produce an object, it produced {other}")),
        }
    }
}

/// `__tether_guard | body`: the body runs only after the guard took its step.
fn guarded(body: &mut Term<&str>) {
    let inner = std::mem::take(body);
    *body = Term::BinOp(
        Box::new(Term::Call(GUARD, Vec::new())),
        BinaryOp::Pipe(None),
        Box::new(inner),
    );
}

fn guard_def(def: &mut Def<&str>) {
    guard_term(&mut def.body);
    guarded(&mut def.body);
}

/// Guards every definition inside `term` and every `reduce`/`foreach` step.
fn guard_term(term: &mut Term<&str>) {
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Break(_) | Term::Var(_) => {}
        Term::Str(_, parts) => {
            for part in parts {
                if let StrPart::Term(t) = part {
                    guard_term(t);
                }
            }
        }
        Term::Arr(inner) => {
            if let Some(t) = inner {
                guard_term(t);
            }
        }
        Term::Obj(entries) => {
            for (key, value) in entries {
                guard_term(key);
                if let Some(v) = value {
                    guard_term(v);
                }
            }
        }
        Term::Neg(t) | Term::Label(_, t) => guard_term(t),
        Term::BinOp(l, op, r) => {
            guard_term(l);
            if let BinaryOp::Pipe(Some(pattern)) = op {
                guard_pattern(pattern);
            }
            guard_term(r);
        }
        Term::Fold(_, xs, pattern, args) => {
            guard_term(xs);
            guard_pattern(pattern);
            for arg in args.iter_mut() {
                guard_term(arg);
            }
            // `reduce xs as $x (init; update)`, `foreach xs as $x (init; update; extract)`.
            if let Some(update) = args.get_mut(1) {
                guarded(update);
            }
        }
        Term::TryCatch(t, catch) => {
            guard_term(t);
            if let Some(c) = catch {
                guard_term(c);
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                guard_term(cond);
                guard_term(then);
            }
            if let Some(t) = otherwise {
                guard_term(t);
            }
        }
        Term::Def(defs, rest) => {
            for def in defs {
                guard_def(def);
            }
            guard_term(rest);
        }
        Term::Call(_, args) => {
            for arg in args {
                guard_term(arg);
            }
        }
        Term::Path(t, path) => {
            guard_term(t);
            for (part, _) in &mut path.0 {
                match part {
                    jaq_core::path::Part::Index(i) => guard_term(i),
                    jaq_core::path::Part::Range(from, to) => {
                        for t in [from, to].into_iter().flatten() {
                            guard_term(t);
                        }
                    }
                }
            }
        }
    }
}

fn guard_pattern(pattern: &mut Pattern<&str>) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter_mut().for_each(guard_pattern),
        Pattern::Obj(entries) => {
            for (key, value) in entries {
                guard_term(key);
                guard_pattern(value);
            }
        }
    }
}

/// The guard: identity that first takes a step of the budget; paths and updates pass through.
fn guard_native() -> Native<Data> {
    fn run(cv: Cv<'_, Data>) -> ValXs<'_, Val> {
        match budget::step() {
            Ok(()) => box_once(Ok(cv.1)),
            Err(message) => box_once(Err(Exn::from(Error::str(message)))),
        }
    }
    Native::<Data>::new(run)
        .with_paths(|cv| match budget::step() {
            Ok(()) => box_once(Ok(cv.1)),
            Err(message) => box_once(Err(Exn::from(Error::str(message)))),
        })
        .with_update(|cv, f| match budget::step() {
            Ok(()) => f(cv.1),
            Err(message) => box_once(Err(Exn::from(Error::str(message)))),
        })
}

/// The budget of the run on this thread: steps left, and where its stack began.
mod budget {
    use super::{Cell, FUEL, STACK_LIMIT};

    thread_local! {
        static FUEL_LEFT: Cell<u64> = const { Cell::new(0) };
        static STACK_BASE: Cell<usize> = const { Cell::new(0) };
    }

    fn stack_address() -> usize {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize
    }

    /// Called first on a fresh evaluation thread.
    pub(super) fn start() {
        FUEL_LEFT.with(|f| f.set(FUEL));
        STACK_BASE.with(|b| b.set(stack_address()));
    }

    pub(super) fn step() -> Result<(), String> {
        let left = FUEL_LEFT.with(Cell::get);
        if left == 0 {
            return Err(format!(
                "the jq filter took more than {FUEL} steps (definition calls and reduce/foreach \
                 iterations) for one record; does it recurse without end?"
            ));
        }
        FUEL_LEFT.with(|f| f.set(left - 1));
        let base = STACK_BASE.with(Cell::get);
        // The stack grows down on every platform tether builds for.
        if base.saturating_sub(stack_address()) > STACK_LIMIT {
            return Err(format!(
                "the jq filter recursed deeper than its {} MiB of stack for one record; does it \
                 recurse without end?",
                STACK_LIMIT >> 20
            ));
        }
        Ok(())
    }
}

/// How deep the filter's output may nest: as deep as JSON read from a connector (serde_json's
/// limit), so the expressions after the filter never recurse deeper than on any record.
const MAX_OUTPUT_DEPTH: usize = 128;

/// jaq values are a superset of JSON (byte strings, NaN, non-string keys): convert what JSON can
/// hold and say what it cannot.
fn to_json(value: &Val, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    if depth > MAX_OUTPUT_DEPTH {
        return Err(format!("the jq output nests deeper than {MAX_OUTPUT_DEPTH} levels"));
    }
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
        Val::Arr(items) => J::Array(items.iter().map(|v| to_json(v, depth + 1)).collect::<Result<_, _>>()?),
        Val::Obj(map) => {
            let mut object = serde_json::Map::new();
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => return Err(format!("the jq output has an object key that is not text: {other}")),
                };
                object.insert(key, to_json(v, depth + 1)?);
            }
            J::Object(object)
        }
    })
}
