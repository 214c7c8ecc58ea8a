//! AroFlo's GET language: `where=<and|or>|[(|]field|op|value[|)]` (repeatable), `order`,
//! `join`, `page`, `pageSize` (reference §2.3). Parsed from the raw query string.

use super::model::FieldValue;
use crate::timefmt::days_from_civil;

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq,
    Lt,
    Gt,
    Ne,
    In,
    NotIn,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    And,
    Or,
    Open,
    Close,
    Cond(Condition),
}

/// A parsed WHERE: conditions combined with and/or, `and` binding tighter, brackets grouping.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Cond(Condition),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

fn op(raw: &str) -> Option<Op> {
    Some(match raw.trim().to_ascii_uppercase().as_str() {
        "=" => Op::Eq,
        "<" => Op::Lt,
        ">" => Op::Gt,
        "!=" => Op::Ne,
        "IN" => Op::In,
        "NOT IN" => Op::NotIn,
        _ => return None,
    })
}

/// Parses every `where` value; `allowed` lists the zone's WHERE fields.
pub fn parse_where(clauses: &[String], allowed: &[&str]) -> Result<Option<Expr>, String> {
    if clauses.is_empty() {
        return Ok(None);
    }
    let mut tokens = Vec::new();
    for (i, clause) in clauses.iter().enumerate() {
        let mut parts: Vec<&str> = clause.split('|').collect();
        let conjunction = match parts.first().map(|c| c.trim().to_ascii_lowercase()) {
            Some(c) if c == "and" => Token::And,
            Some(c) if c == "or" => Token::Or,
            _ => return Err(format!("`{clause}` does not start with and/or")),
        };
        parts.remove(0);
        if i > 0 {
            tokens.push(conjunction);
        }
        let mut opens = 0;
        while parts.first().is_some_and(|p| p.trim() == "(") {
            parts.remove(0);
            opens += 1;
        }
        let mut closes = 0;
        while parts.last().is_some_and(|p| p.trim() == ")") {
            parts.pop();
            closes += 1;
        }
        let [field, operator, value] = parts.as_slice() else {
            return Err(format!("`{clause}` is not field|op|value"));
        };
        let field = field.trim().to_ascii_lowercase();
        if !allowed.contains(&field.as_str()) {
            return Err(format!("`{field}` cannot be filtered on in this zone"));
        }
        let op = op(operator).ok_or_else(|| format!("`{operator}` is not an operator"))?;
        tokens.extend(std::iter::repeat_n(Token::Open, opens));
        tokens.push(Token::Cond(Condition {
            field,
            op,
            value: value.to_string(),
        }));
        tokens.extend(std::iter::repeat_n(Token::Close, closes));
    }
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.or()?;
    if parser.at != parser.tokens.len() {
        return Err("unbalanced brackets".into());
    }
    Ok(Some(expr))
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.tokens.get(self.at) == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        while self.tokens.get(self.at) == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, String> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.or()?;
                if self.tokens.get(self.at) != Some(&Token::Close) {
                    return Err("unbalanced brackets".into());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Cond(c)) => {
                self.at += 1;
                Ok(Expr::Cond(c))
            }
            _ => Err("unbalanced brackets".into()),
        }
    }
}

/// `YYYY/MM/DD` or `YYYY-MM-DD`, optionally ` HH:mm[:ss]`; epoch ms, UTC.
pub fn parse_date(value: &str) -> Option<i64> {
    let value = value.trim();
    let (date, clock) = value.split_once([' ', 'T']).unwrap_or((value, ""));
    let mut d = date.split(['/', '-']).map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(y, m as u32, day as u32) * 86_400_000;
    let clock = clock.trim_end_matches('Z');
    if !clock.is_empty() {
        let clock = clock.split('.').next().unwrap_or("");
        let mut c = clock.split(':').map(|p| p.parse::<i64>().ok());
        let (h, mi) = (c.next()??, c.next()??);
        let s = c.next().flatten().unwrap_or(0);
        if h > 23 || mi > 59 || s > 59 {
            return None;
        }
        ms += h * 3_600_000 + mi * 60_000 + s * 1000;
    }
    Some(ms)
}

fn bool_of(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Compares one record value with one clause value. `Err` for a value the field cannot take
/// (AroFlo answers "Invalid WHERE Clause").
fn compare(actual: &FieldValue, op: &Op, raw: &str) -> Result<bool, String> {
    let values: Vec<&str> = match op {
        Op::In | Op::NotIn => raw.split('*').collect(),
        _ => vec![raw],
    };
    let mut orderings = Vec::new();
    for value in &values {
        let ordering = match actual {
            FieldValue::Text(text) => text.to_lowercase().cmp(&value.to_lowercase()),
            FieldValue::Bool(b) => {
                let wanted = bool_of(value).ok_or_else(|| format!("`{value}` is not true/false"))?;
                b.cmp(&wanted)
            }
            FieldValue::Time(ms) => {
                let wanted = parse_date(value).ok_or_else(|| format!("`{value}` is not a date"))?;
                (ms.div_euclid(1000)).cmp(&wanted.div_euclid(1000))
            }
            FieldValue::Day(ms) => {
                let wanted = parse_date(value).ok_or_else(|| format!("`{value}` is not a date"))?;
                (ms.div_euclid(86_400_000)).cmp(&wanted.div_euclid(86_400_000))
            }
        };
        orderings.push(ordering);
    }
    use std::cmp::Ordering::*;
    Ok(match op {
        Op::Eq => orderings[0] == Equal,
        Op::Ne => orderings[0] != Equal,
        Op::Lt => orderings[0] == Less,
        Op::Gt => orderings[0] == Greater,
        Op::In => orderings.contains(&Equal),
        Op::NotIn => !orderings.contains(&Equal),
    })
}

impl Expr {
    /// Whether a record matches; `field` reads the record's value for a WHERE field (absent
    /// values, like an open task's completion date, match nothing).
    pub fn matches(&self, field: &dyn Fn(&str) -> Option<FieldValue>) -> Result<bool, String> {
        Ok(match self {
            Expr::Cond(c) => match field(&c.field) {
                Some(actual) => compare(&actual, &c.op, &c.value)?,
                None => matches!(c.op, Op::Ne | Op::NotIn),
            },
            Expr::And(a, b) => a.matches(field)? && b.matches(field)?,
            Expr::Or(a, b) => a.matches(field)? || b.matches(field)?,
        })
    }

    /// The id, when the whole WHERE is `idfield = value` (a single-record GET, which AroFlo
    /// counts against its secondary daily limit).
    pub fn single_id(&self, id_field: &str) -> bool {
        matches!(self, Expr::Cond(Condition { field, op: Op::Eq, .. }) if field == id_field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clauses(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn brackets_and_precedence() {
        let allowed = ["clientname", "archived"];
        let expr = parse_where(
            &clauses(&["and|archived|=|false", "and|(|clientname|=|A", "or|clientname|=|B|)"]),
            &allowed,
        )
        .expect("parse")
        .expect("some");
        let record = |name: &'static str, archived: bool| {
            move |f: &str| match f {
                "clientname" => Some(FieldValue::Text(name.into())),
                "archived" => Some(FieldValue::Bool(archived)),
                _ => None,
            }
        };
        assert!(expr.matches(&record("B", false)).expect("eval"));
        assert!(!expr.matches(&record("B", true)).expect("eval"));
        assert!(!expr.matches(&record("C", false)).expect("eval"));
        assert!(parse_where(&clauses(&["and|(|clientname|=|A"]), &allowed).is_err());
        assert!(parse_where(&clauses(&["clientname|=|A"]), &allowed).is_err());
        assert!(parse_where(&clauses(&["and|phone|=|1"]), &allowed).is_err());
    }

    #[test]
    fn dates_compare_at_their_precision_and_in_lists_split_on_stars() {
        let at = parse_date("2024/05/13 10:00:04").expect("date") + 500;
        let time = FieldValue::Time(at);
        assert!(!compare(&time, &Op::Gt, "2024/05/13 10:00:04").expect("cmp"));
        assert!(compare(&time, &Op::Gt, "2024-05-13 10:00:03").expect("cmp"));
        assert!(compare(&FieldValue::Day(at), &Op::Eq, "2024/05/13").expect("cmp"));
        assert!(compare(&time, &Op::Gt, "yesterday").is_err());
        let id = FieldValue::Text("b".into());
        assert!(compare(&id, &Op::In, "a*b*c").expect("cmp"));
        assert!(compare(&id, &Op::NotIn, "a*c").expect("cmp"));
    }
}
