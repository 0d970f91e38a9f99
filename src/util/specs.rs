//! oslo.utils' `specs_matcher`: the grammar and the `match` of the
//! expressions root-device hints (and, in IPA, other filters) are written
//! in: `"<in> samsung"`, `">= 100"`, `"<or> a <or> b"`,
//! `"<range-in> [ 10 100 )"`. Errors carry Python's message where Python
//! raises; the caller decides their IPA class.

use crate::error::{AgentError, Result};

/// Unary operators in the grammar's MatchFirst order ("==" before "=",
/// "s<=" before "s<").
const UNARY_OPS: [&str; 14] = [
    "==", "=", "!=", "<in>", ">=", "<=", ">", "<", "s==", "s!=", "s<=", "s<", "s>=", "s>",
];

fn skip_ws(s: &str, pos: usize) -> usize {
    pos + s[pos..].len() - s[pos..].trim_start_matches([' ', '\t', '\n', '\r']).len()
}

fn unary_op_at(s: &str, pos: usize) -> Option<&'static str> {
    UNARY_OPS
        .iter()
        .copied()
        .find(|op| s[pos..].starts_with(op))
}

fn keyword_at(s: &str, pos: usize) -> bool {
    unary_op_at(s, pos).is_some()
        || ["<all-in>", "<or>", "<range-in>"]
            .iter()
            .any(|k| s[pos..].starts_with(k))
}

/// `atom = ~keyword + Regex(r"\S+")`, after leading whitespace.
fn atom(s: &str, pos: usize) -> Option<(String, usize)> {
    let p = skip_ws(s, pos);
    if p >= s.len() || keyword_at(s, p) {
        return None;
    }
    let len = s[p..]
        .find(|c: char| c.is_whitespace())
        .unwrap_or(s.len() - p);
    // `\S+` matches at least one character: whitespace that pyparsing
    // does not skip (a vertical tab, a form feed, Unicode spaces) ends
    // the expression here, not in an empty atom
    (len > 0).then(|| (s[p..p + len].to_string(), p + len))
}

fn literal(s: &str, pos: usize, lit: &str) -> Option<usize> {
    let p = skip_ws(s, pos);
    s[p..].starts_with(lit).then_some(p + lit.len())
}

/// `expr = disjunction | nary | range_op | unary | atom`, parsed like
/// pyparsing's `parseString` (a prefix match: trailing text is ignored).
/// `None` is a ParseException.
pub fn parse_spec(s: &str) -> Option<Vec<String>> {
    // disjunction = OneOrMore("<or>" + atom) → ["<or>", a, b, ...]
    let mut pos = 0;
    let mut alts = vec![];
    while let Some(p) = literal(s, pos, "<or>") {
        match atom(s, p) {
            Some((a, p)) => {
                alts.push(a);
                pos = p;
            }
            None => break,
        }
    }
    if !alts.is_empty() {
        let mut t = vec!["<or>".to_string()];
        t.extend(alts);
        return Some(t);
    }
    // nary = "<all-in>" + OneOrMore(atom)
    if let Some(mut p) = literal(s, 0, "<all-in>") {
        let mut t = vec!["<all-in>".to_string()];
        while let Some((a, np)) = atom(s, p) {
            t.push(a);
            p = np;
        }
        if t.len() > 1 {
            return Some(t);
        }
    }
    // range_op = "<range-in>" + atom + atom + atom + atom
    if let Some(mut p) = literal(s, 0, "<range-in>") {
        let mut t = vec!["<range-in>".to_string()];
        for _ in 0..4 {
            match atom(s, p) {
                Some((a, np)) => {
                    t.push(a);
                    p = np;
                }
                None => break,
            }
        }
        if t.len() == 5 {
            return Some(t);
        }
    }
    // unary = unary_ops + atom
    let p = skip_ws(s, 0);
    if p < s.len() {
        if let Some(op) = unary_op_at(s, p) {
            if let Some((a, _)) = atom(s, p + op.len()) {
                return Some(vec![op.to_string(), a]);
            }
        }
    }
    atom(s, 0).map(|(a, _)| vec![a])
}

/// A value compared by `specs_matcher.match`.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Str(String),
    /// `size` in GiB (bytes / 2^30, a float, as IPA computes it).
    Num(f64),
}

/// Python's `float(str)`: surrounding whitespace allowed, "inf"/"nan" too.
pub fn py_float(s: &str) -> Result<f64> {
    let t = s.trim().replace('_', "");
    t.parse::<f64>()
        .map_err(|_| AgentError::msg(format!("could not convert string to float: '{s}'")))
}

fn num(v: &Val) -> Result<f64> {
    match v {
        Val::Num(n) => Ok(*n),
        Val::Str(s) => py_float(s),
    }
}

/// `ast.literal_eval` of a list literal of strings/numbers, for `<all-in>`.
fn literal_list(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut out = vec![];
    for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let unq = item
            .strip_prefix('\'')
            .and_then(|i| i.strip_suffix('\''))
            .or_else(|| item.strip_prefix('"').and_then(|i| i.strip_suffix('"')));
        match unq {
            Some(u) => out.push(u.to_string()),
            None if py_float(item).is_ok() => out.push(item.to_string()),
            None => return None,
        }
    }
    Some(out)
}

/// `ast.literal_eval(x)` followed by `float()`, for `<range-in>`.
fn literal_number(v: &Val) -> Result<f64> {
    match v {
        Val::Num(n) => Ok(*n),
        Val::Str(s) => {
            let t = s.trim();
            if t.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.') {
                py_float(t)
            } else {
                Err(AgentError::msg(format!("malformed node or string: {s:?}")))
            }
        }
    }
}

/// oslo `specs_matcher.match(value, spec)` with every operator: numeric
/// `=` (which means ≥), `==`, `!=`, `>=`, `<=`, `>`, `<`; string `s==`,
/// `s!=`, `s<`, `s<=`, `s>`, `s>=`; `<in>`, `<or>`, `<all-in>`,
/// `<range-in>`. `Err` where Python raises (a non-number for a numeric
/// operator, `<all-in>` on a non-list, a malformed range).
pub fn spec_match(value: &Val, spec: &str) -> Result<bool> {
    let tree = parse_spec(spec).unwrap_or_else(|| vec![spec.to_string()]);
    if tree.len() == 1 {
        return Ok(matches!(value, Val::Str(s) if *s == tree[0]));
    }
    let op = tree[0].as_str();
    let args = &tree[1..];
    let y = &args[0];
    let str_cmp = |f: fn(&str, &str) -> bool| -> Result<bool> {
        match value {
            Val::Str(x) => Ok(f(x, y)),
            Val::Num(_) => Err(AgentError::msg(format!(
                "'{op}' not supported between a number and a string"
            ))),
        }
    };
    Ok(match op {
        "=" | ">=" => num(value)? >= py_float(y)?,
        "==" => num(value)? == py_float(y)?,
        "!=" => num(value)? != py_float(y)?,
        "<=" => num(value)? <= py_float(y)?,
        "<" => num(value)? < py_float(y)?,
        ">" => num(value)? > py_float(y)?,
        "s==" => matches!(value, Val::Str(x) if x == y),
        "s!=" => !matches!(value, Val::Str(x) if x == y),
        "s<" => str_cmp(|x, y| x < y)?,
        "s<=" => str_cmp(|x, y| x <= y)?,
        "s>" => str_cmp(|x, y| x > y)?,
        "s>=" => str_cmp(|x, y| x >= y)?,
        "<in>" => match value {
            Val::Str(x) => x.contains(y.as_str()),
            Val::Num(_) => return Err(AgentError::msg("argument of type 'float' is not iterable")),
        },
        "<or>" => match value {
            Val::Str(x) => args.iter().any(|a| a == x),
            // See the module comment: numeric for size.
            Val::Num(n) => args
                .iter()
                .any(|a| py_float(a).map(|f| f == *n).unwrap_or(false)),
        },
        "<all-in>" => {
            let list = match value {
                Val::Str(x) => literal_list(x),
                Val::Num(_) => None,
            }
            .ok_or_else(|| {
                AgentError::msg(
                    "<all-in> must compare with a list literal string, EG \"['aes', 'mmx']\"",
                )
            })?;
            args.iter().all(|a| list.contains(a))
        }
        "<range-in>" => {
            let x = literal_number(value)?;
            let (lo, hi) = (py_float(&args[1])?, py_float(&args[2])?);
            if lo > hi {
                return Err(AgentError::msg(
                    "<range-in> operator's first argument has to be smaller or equal \
                            to the second argument",
                ));
            }
            let lower = match args[0].as_str() {
                "[" => x >= lo,
                "(" => x > lo,
                _ => {
                    return Err(AgentError::msg(
                        "The first element should be an opening bracket",
                    ))
                }
            };
            let upper = match args[3].as_str() {
                "]" => x <= hi,
                ")" => x < hi,
                _ => {
                    return Err(AgentError::msg(
                        "The last element should be a closing bracket",
                    ))
                }
            };
            lower && upper
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whitespace that pyparsing does not skip but `\S` refuses (here a
    /// vertical tab) after `<all-in>`: the atom loop took an empty atom
    /// forever, growing its list until memory ran out (found by the fuzz
    /// target `specs`; a root-device hint reaches it).
    #[test]
    fn no_empty_atoms() {
        assert_eq!(
            parse_spec("<all-in>\x0b\0\0"),
            Some(vec!["<".to_string(), "all-in>".to_string()])
        );
        // (no disjunction without an atom: "<" is then the operator)
        assert_eq!(
            parse_spec("<or>\x0b"),
            Some(vec!["<".to_string(), "or>".to_string()])
        );
        assert_eq!(
            parse_spec("<all-in> a\x0c b"),
            Some(vec!["<all-in>".to_string(), "a".to_string()])
        );
        assert_eq!(parse_spec("\x0b"), None);
        // and a match on it ends (Python raises here: "<" with a string)
        assert!(spec_match(&Val::Str("x".into()), "<all-in>\x0b").is_err());
        // unchanged for ordinary specs
        assert_eq!(
            parse_spec("<or> 100 <or> 200"),
            Some(vec!["<or>".into(), "100".into(), "200".into()])
        );
        assert_eq!(
            parse_spec("<range-in> [ 10 20 )"),
            Some(vec![
                "<range-in>".into(),
                "[".into(),
                "10".into(),
                "20".into(),
                ")".into()
            ])
        );
    }
}
