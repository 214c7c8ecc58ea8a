//! A token-level reading of a compiled expression, for the checks minijinja leaves to run time:
//! filter and test names, literal arguments of project filters, where a name is used.

use std::ops::Range;

use minijinja::machinery::{tokenize, Token};
use minijinja::syntax::SyntaxConfig;

/// A filter or test application, with its first literal string argument if there is one.
pub(super) struct Call {
    pub name: String,
    pub at: Range<usize>,
    pub args: usize,
    pub literal: Option<(String, Range<usize>)>,
}

#[derive(Default)]
pub(super) struct Scan {
    pub filters: Vec<Call>,
    pub tests: Vec<(String, Range<usize>)>,
    /// Identifiers read as variables (not attributes, filters, tests or keyword arguments).
    pub variables: Vec<(String, Range<usize>)>,
}

fn range(span: &minijinja::machinery::Span) -> Range<usize> {
    span.start_offset as usize..span.end_offset as usize
}

fn literal(token: &Token<'_>) -> Option<String> {
    match token {
        Token::Str(s) => Some((*s).to_owned()),
        Token::String(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Number of arguments of the call whose `(` is at `open`, and its first argument if that is a
/// lone string literal.
fn call_args(tokens: &[(Token<'_>, Range<usize>)], open: usize) -> (usize, Option<(String, Range<usize>)>) {
    // The token's span covers the quotes; errors point at the content.
    let first = tokens
        .get(open + 1)
        .and_then(|(t, r)| literal(t).map(|s| (s, r.start + 1..r.end.saturating_sub(1).max(r.start + 1))));
    let first_alone = matches!(tokens.get(open + 2), Some((Token::Comma | Token::ParenClose, _)));
    let (mut depth, mut commas, mut empty) = (0usize, 0usize, true);
    for (k, (token, _)) in tokens[open..].iter().enumerate() {
        match token {
            Token::ParenOpen | Token::BracketOpen | Token::BraceOpen => depth += 1,
            Token::ParenClose | Token::BracketClose | Token::BraceClose => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Token::Comma if depth == 1 => commas += 1,
            _ => {}
        }
        empty &= k == 0;
    }
    let args = if empty { 0 } else { commas + 1 };
    (args, first.filter(|_| first_alone))
}

pub(super) fn scan(source: &str) -> Scan {
    let mut tokens = Vec::new();
    for token in tokenize(source, true, SyntaxConfig::default()) {
        match token {
            Ok((token, span)) => tokens.push((token, range(&span))),
            // Syntax errors are reported by compile_expression; nothing to add.
            Err(_) => return Scan::default(),
        }
    }
    let mut scan = Scan::default();
    for (i, (token, at)) in tokens.iter().enumerate() {
        let Token::Ident(name) = token else { continue };
        let prev = i.checked_sub(1).map(|p| &tokens[p].0);
        let prev2 = i.checked_sub(2).map(|p| &tokens[p].0);
        let next = tokens.get(i + 1).map(|t| &t.0);
        match (prev2, prev) {
            (_, Some(Token::Pipe)) => {
                let (args, literal) = match next {
                    Some(Token::ParenOpen) => call_args(&tokens, i + 1),
                    _ => (0, None),
                };
                scan.filters.push(Call {
                    name: (*name).to_owned(),
                    at: at.clone(),
                    args,
                    literal,
                });
            }
            (_, Some(Token::Ident("is"))) if *name != "not" => scan.tests.push(((*name).to_owned(), at.clone())),
            (Some(Token::Ident("is")), Some(Token::Ident("not"))) => scan.tests.push(((*name).to_owned(), at.clone())),
            (_, Some(Token::Dot)) => {}
            _ if matches!(next, Some(Token::Assign)) => {}
            _ if matches!(
                *name,
                "true"
                    | "false"
                    | "none"
                    | "True"
                    | "False"
                    | "None"
                    | "and"
                    | "or"
                    | "not"
                    | "is"
                    | "in"
                    | "if"
                    | "else"
            ) => {}
            _ => scan.variables.push(((*name).to_owned(), at.clone())),
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_filters_tests_and_variables() {
        let s = scan(r#"phone | e164("PT") if phone is not none else record.x | lookup("t", "d") | trim"#);
        let filters: Vec<(&str, usize, Option<&str>)> = s
            .filters
            .iter()
            .map(|c| (c.name.as_str(), c.args, c.literal.as_ref().map(|l| l.0.as_str())))
            .collect();
        assert_eq!(
            filters,
            [("e164", 1, Some("PT")), ("lookup", 2, Some("t")), ("trim", 0, None)]
        );
        assert_eq!(s.tests.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["none"]);
        let vars: Vec<&str> = s.variables.iter().map(|v| v.0.as_str()).collect();
        assert_eq!(vars, ["phone", "phone", "record"]);
        assert_eq!(s.variables[1].1, 22..27);
    }
}
