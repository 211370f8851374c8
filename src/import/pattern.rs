//! A small reader for the regular expressions of other lists (ClearURLs, `$removeparam`),
//! and their exact translation into mailveil globs where one exists.
//!
//! Only a subset is translated: literals, `.*` (any run: the glob `*`), alternations,
//! optional parts and small character sets of single characters. Everything else
//! (`.`, `+`, `{n,m}`, ranges, `\d`, look-arounds...) has no exact glob and is refused, so
//! that an imported rule never matches more than its source.

/// One element of a parsed regular expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A literal character (escapes resolved).
    Lit(char),
    /// `.`
    Any,
    /// `[...]`: the single characters listed, or `None` when the set has ranges or
    /// escapes that stand for many characters.
    Class {
        negated: bool,
        chars: Option<Vec<char>>,
    },
    /// `(...)`, `(?:...)`: alternatives.
    Group { capture: bool, alts: Vec<Vec<Node>> },
    /// A quantifier applied to a node (laziness does not change what matches overall).
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
    /// `^`
    Start,
    /// `$`
    End,
    /// Anything else (`\d`, `\b`, look-arounds...): never translated.
    Other(String),
}

/// The most globs one pattern may expand to.
const MAX_EXPANSION: usize = 64;
/// The longest character range expanded (`a-z`).
const MAX_RANGE: u32 = 26;
/// The most characters one class may stand for in a glob.
const MAX_CLASS: usize = 36;

/// Parses `re` into its top-level alternatives.
pub fn parse(re: &str) -> Result<Vec<Vec<Node>>, String> {
    let chars: Vec<char> = re.chars().collect();
    let mut pos = 0;
    let alts = parse_alts(&chars, &mut pos, 0)?;
    if pos < chars.len() {
        return Err(format!("unbalanced ')' at offset {pos}"));
    }
    Ok(alts)
}

/// Parses `re`, which must have no top-level alternation, into one sequence.
pub fn parse_seq(re: &str) -> Result<Vec<Node>, String> {
    let mut alts = parse(re)?;
    if alts.len() != 1 {
        return Err("alternation at the top level".into());
    }
    Ok(alts.remove(0))
}

fn parse_alts(c: &[char], pos: &mut usize, depth: usize) -> Result<Vec<Vec<Node>>, String> {
    if depth > 16 {
        return Err("groups nested too deeply".into());
    }
    let mut alts = vec![Vec::new()];
    while *pos < c.len() {
        let ch = c[*pos];
        let node = match ch {
            ')' => {
                if depth == 0 {
                    return Err(format!("unbalanced ')' at offset {pos}"));
                }
                break;
            }
            '|' => {
                *pos += 1;
                alts.push(Vec::new());
                continue;
            }
            '(' => {
                *pos += 1;
                let mut capture = true;
                if c.get(*pos) == Some(&'?') {
                    if c.get(*pos + 1) == Some(&':') {
                        capture = false;
                        *pos += 2;
                    } else {
                        return Err("look-around or named group".into());
                    }
                }
                let inner = parse_alts(c, pos, depth + 1)?;
                if c.get(*pos) != Some(&')') {
                    return Err("unclosed '('".into());
                }
                *pos += 1;
                Node::Group {
                    capture,
                    alts: inner,
                }
            }
            '[' => parse_class(c, pos)?,
            '\\' => parse_escape(c, pos)?,
            '.' => {
                *pos += 1;
                Node::Any
            }
            '^' => {
                *pos += 1;
                Node::Start
            }
            '$' => {
                *pos += 1;
                Node::End
            }
            '*' | '+' | '?' | '{' => {
                return Err(format!("quantifier {ch:?} with nothing before it"));
            }
            _ => {
                *pos += 1;
                Node::Lit(ch)
            }
        };
        let node = parse_quantifier(c, pos, node)?;
        alts.last_mut().expect("never empty").push(node);
    }
    Ok(alts)
}

fn parse_quantifier(c: &[char], pos: &mut usize, node: Node) -> Result<Node, String> {
    let (min, max) = match c.get(*pos) {
        Some('*') => {
            *pos += 1;
            (0, None)
        }
        Some('+') => {
            *pos += 1;
            (1, None)
        }
        Some('?') => {
            *pos += 1;
            (0, Some(1))
        }
        Some('{') => {
            let end = c[*pos..]
                .iter()
                .position(|&x| x == '}')
                .ok_or("unclosed '{'")?;
            let body: String = c[*pos + 1..*pos + end].iter().collect();
            *pos += end + 1;
            let num = |s: &str| {
                s.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("bad {{{body}}}"))
            };
            match body.split_once(',') {
                None => {
                    let n = num(&body)?;
                    (n, Some(n))
                }
                Some((a, "")) => (num(a)?, None),
                Some((a, b)) => (num(a)?, Some(num(b)?)),
            }
        }
        _ => return Ok(node),
    };
    if matches!(node, Node::Start | Node::End) {
        return Err("quantified anchor".into());
    }
    if c.get(*pos) == Some(&'?') {
        *pos += 1; // lazy: the same strings match
    }
    if matches!(c.get(*pos), Some('*' | '+' | '?' | '{')) {
        return Err("stacked quantifiers".into());
    }
    Ok(Node::Repeat {
        node: Box::new(node),
        min,
        max,
    })
}

fn parse_escape(c: &[char], pos: &mut usize) -> Result<Node, String> {
    let e = *c.get(*pos + 1).ok_or("trailing backslash")?;
    *pos += 2;
    let hex = |pos: &mut usize, n: usize| -> Result<char, String> {
        let s: String = c
            .get(*pos..*pos + n)
            .ok_or("short escape")?
            .iter()
            .collect();
        *pos += n;
        u32::from_str_radix(&s, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!("bad escape {s:?}"))
    };
    Ok(match e {
        'x' => Node::Lit(hex(pos, 2)?),
        'u' => Node::Lit(hex(pos, 4)?),
        'n' => Node::Lit('\n'),
        't' => Node::Lit('\t'),
        'r' => Node::Lit('\r'),
        c if c.is_ascii_alphanumeric() => Node::Other(format!("\\{c}")),
        c => Node::Lit(c),
    })
}

fn parse_class(c: &[char], pos: &mut usize) -> Result<Node, String> {
    *pos += 1; // '['
    let negated = c.get(*pos) == Some(&'^');
    if negated {
        *pos += 1;
    }
    let mut chars = Vec::new();
    let mut exact = true;
    let mut first = true;
    loop {
        let ch = *c.get(*pos).ok_or("unclosed '['")?;
        if ch == ']' && !first {
            *pos += 1;
            break;
        }
        first = false;
        let lit = if ch == '\\' {
            let e = *c.get(*pos + 1).ok_or("trailing backslash")?;
            *pos += 2;
            if e.is_ascii_alphanumeric() {
                exact = false; // \d, \w, \x41...: many or unusual characters
                continue;
            }
            e
        } else {
            *pos += 1;
            ch
        };
        if c.get(*pos) == Some(&'-') && c.get(*pos + 1).is_some_and(|&n| n != ']') {
            // A short range of ASCII letters or digits (`a-z`, `0-9`) is as exact as its
            // characters listed one by one; anything else is not translated.
            let hi = c[*pos + 1];
            *pos += if hi == '\\' { 3 } else { 2 };
            let short = hi != '\\'
                && lit.is_ascii_alphanumeric()
                && hi.is_ascii_alphanumeric()
                && lit <= hi
                && (hi as u32 - lit as u32) < MAX_RANGE;
            if short {
                chars.extend((lit..=hi).filter(char::is_ascii_alphanumeric));
            } else {
                exact = false;
            }
            continue;
        }
        chars.push(lit);
    }
    Ok(Node::Class {
        negated,
        chars: exact.then_some(chars),
    })
}

/// The globs (`*` = any run of characters) that together match exactly what `nodes`
/// matches, or why there are none. `wild` maps a literal to a glob fragment for
/// placeholders (the caller's own private characters), or `None` for a plain literal.
pub fn globs(
    nodes: &[Node],
    wild: &dyn Fn(char) -> Option<&'static str>,
) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    for node in nodes {
        let parts = node_globs(node, wild)?;
        if out.len() * parts.len() > MAX_EXPANSION {
            return Err(format!("expands to more than {MAX_EXPANSION} patterns"));
        }
        if let [part] = parts.as_slice() {
            // one way on: appended in place (a long literal costs its length, once)
            super::work::tick(out.len() * part.len());
            for a in &mut out {
                a.push_str(part);
            }
            continue;
        }
        let mut next = Vec::with_capacity(out.len() * parts.len());
        for a in &out {
            for b in &parts {
                super::work::tick(a.len() + b.len());
                next.push(format!("{a}{b}"));
            }
        }
        out = next;
    }
    let mut out: Vec<String> = out
        .into_iter()
        .map(|g| {
            let mut g = g;
            while g.contains("**") {
                g = g.replace("**", "*");
            }
            g
        })
        .collect();
    dedup(&mut out);
    Ok(out)
}

/// Globs that match at least everything `nodes` matches (maybe more): every node without
/// an exact glob becomes `*`. For exceptions only, where matching more means removing
/// less, never more.
pub fn loose_globs(nodes: &[Node]) -> Result<Vec<String>, String> {
    let loose: Vec<Node> = nodes
        .iter()
        .map(|n| {
            if node_globs(n, &|_| None).is_ok() {
                n.clone()
            } else {
                loosen(n)
            }
        })
        .collect();
    globs(&loose, &|_| None)
}

/// A node as `.*` unless it is a group, whose alternatives are loosened one by one.
fn loosen(node: &Node) -> Node {
    let any = Node::Repeat {
        node: Box::new(Node::Any),
        min: 0,
        max: None,
    };
    match node {
        Node::Group { capture, alts } => Node::Group {
            capture: *capture,
            alts: alts
                .iter()
                .map(|a| {
                    a.iter()
                        .map(|n| {
                            if node_globs(n, &|_| None).is_ok() {
                                n.clone()
                            } else {
                                loosen(n)
                            }
                        })
                        .collect()
                })
                .collect(),
        },
        Node::Repeat {
            node: inner,
            min: 0,
            max: Some(1),
        } if matches!(**inner, Node::Group { .. }) => Node::Repeat {
            node: Box::new(loosen(inner)),
            min: 0,
            max: Some(1),
        },
        Node::Lit('*') | Node::Start | Node::End => node.clone(),
        _ => any,
    }
}

fn node_globs(
    node: &Node,
    wild: &dyn Fn(char) -> Option<&'static str>,
) -> Result<Vec<String>, String> {
    match node {
        Node::Lit('*') => Err("a literal '*' (a wildcard in mailveil globs)".into()),
        Node::Lit(c) => Ok(vec![wild(*c).map_or_else(|| c.to_string(), str::to_string)]),
        Node::Repeat {
            node,
            min: 0,
            max: None,
        } if **node == Node::Any => Ok(vec!["*".into()]),
        Node::Repeat {
            node,
            min: 0,
            max: Some(1),
        } => {
            let mut v = vec![String::new()];
            v.extend(node_globs(node, wild)?);
            Ok(v)
        }
        Node::Group { alts, .. } => {
            let mut v = Vec::new();
            for alt in alts {
                v.extend(globs(alt, wild)?);
                if v.len() > MAX_EXPANSION {
                    return Err(format!("expands to more than {MAX_EXPANSION} patterns"));
                }
            }
            Ok(v)
        }
        Node::Class {
            negated: false,
            chars: Some(chars),
        } if !chars.is_empty() && chars.len() <= MAX_CLASS => {
            if chars.contains(&'*') {
                return Err("a literal '*' (a wildcard in mailveil globs)".into());
            }
            Ok(chars.iter().map(char::to_string).collect())
        }
        Node::Any => Err("'.' (any one character) has no glob".into()),
        Node::Class { .. } => Err("a character class with ranges or negation has no glob".into()),
        Node::Repeat { .. } => Err("a repetition other than '.*' or '?' has no glob".into()),
        Node::Start | Node::End => Err("an anchor inside the pattern".into()),
        Node::Other(s) => Err(format!("{s} has no glob")),
    }
}

/// Lowercases (mailveil matching is case-insensitive) and removes duplicates, keeping order.
pub fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain_mut(|g| {
        *g = g.to_ascii_lowercase();
        seen.insert(g.clone())
    });
}

/// Whether a node is `.*` (or `.*?`).
pub fn is_any_run(node: &Node) -> bool {
    matches!(node, Node::Repeat { node, min: 0, max: None } if **node == Node::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(re: &str) -> Result<Vec<String>, String> {
        globs(&parse_seq(re)?, &|_| None)
    }

    #[test]
    fn exact_forms_translate() {
        assert_eq!(g("utm_source").unwrap(), ["utm_source"]);
        assert_eq!(g("utm_.*").unwrap(), ["utm_*"]);
        assert_eq!(g("(?:gclid|fbclid)").unwrap(), ["gclid", "fbclid"]);
        assert_eq!(g("ref_?").unwrap(), ["ref", "ref_"]);
        assert_eq!(g("p[fd]_rd").unwrap(), ["pf_rd", "pd_rd"]);
        assert_eq!(g("(?:%3F)?spm").unwrap(), ["spm", "%3fspm"]);
        assert_eq!(g("spIA").unwrap(), ["spia"]);
    }

    #[test]
    fn loose_globs_match_at_least_as_much() {
        let l = |re: &str| loose_globs(&parse_seq(re).unwrap()).unwrap();
        assert_eq!(l("/a/.*?comment-list.json"), ["/a/*comment-list*json"]);
        assert_eq!(l("/s\\?tbm=map.*?gs_[a-z]*=."), ["/s?tbm=map*gs_*=*"]);
        assert_eq!(l("/(?:x|y.z)/"), ["/x/", "/y*z/"]);
    }

    #[test]
    fn inexact_forms_are_refused() {
        assert_eq!(g("li[a-c]").unwrap(), ["lia", "lib", "lic"]);
        assert_eq!(
            g("[c-a]x").unwrap_err(),
            "a character class with ranges or negation has no glob"
        );
        for re in [
            "p[fd]_rd_[a-z]*",
            "a.b",
            "x+",
            "ab{2}",
            "[^a-z]id",
            "\\dx",
            "(?=x)",
            "a\\*",
        ] {
            assert!(g(re).is_err(), "{re}");
        }
    }
}
