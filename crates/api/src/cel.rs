//! The subset of CEL (Common Expression Language) that Telemetry `accessLogging.filter`
//! expressions may use, with Envoy's attribute names: parsed once (a bad or unsupported
//! expression is a validation error in words), evaluated per request against whatever
//! supplies the attributes ([`Attributes`]).
//!
//! Supported: integer, string, bool and null literals; `==`, `!=`, `<`, `<=`, `>`, `>=`;
//! `&&`, `||`, `!`, parentheses; `'x' in request.headers`; `.startsWith()`, `.endsWith()`,
//! `.contains()` on strings; `string(x)`; the attributes in [`Attr`] (`request.headers['name']` for a
//! header). Evaluation follows CEL: a missing header or a type mismatch is an error, and
//! `||`/`&&` absorb an error when the other side decides. A filter whose result is an
//! error or not `true` does not log, as in Envoy.

use std::fmt;

/// An attribute Envoy exposes to CEL that weft provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    ResponseCode,
    /// Envoy's response flags as its bit vector (`response.flags != 0`: any flag).
    ResponseFlags,
    ResponseCodeDetails,
    ResponseSize,
    RequestPath,
    RequestUrlPath,
    RequestMethod,
    RequestHost,
    RequestScheme,
    RequestProtocol,
    RequestId,
    RequestUserAgent,
    RequestSize,
    /// Milliseconds from the request's start to the end of the response.
    RequestDurationMs,
    SourceAddress,
    DestinationAddress,
    UpstreamAddress,
    ClusterName,
    RouteName,
    /// `request.headers` (a map; `request.headers['x']` is one header, lower-cased name).
    RequestHeaders,
    /// `response.headers`.
    ResponseHeaders,
}

const ATTRS: &[(&str, Attr)] = &[
    ("response.code", Attr::ResponseCode),
    ("response.flags", Attr::ResponseFlags),
    ("response.code_details", Attr::ResponseCodeDetails),
    ("response.size", Attr::ResponseSize),
    ("response.total_size", Attr::ResponseSize),
    ("response.headers", Attr::ResponseHeaders),
    ("request.path", Attr::RequestPath),
    ("request.url_path", Attr::RequestUrlPath),
    ("request.method", Attr::RequestMethod),
    ("request.host", Attr::RequestHost),
    ("request.scheme", Attr::RequestScheme),
    ("request.protocol", Attr::RequestProtocol),
    ("request.id", Attr::RequestId),
    ("request.useragent", Attr::RequestUserAgent),
    ("request.size", Attr::RequestSize),
    ("request.total_size", Attr::RequestSize),
    ("request.duration", Attr::RequestDurationMs),
    ("request.headers", Attr::RequestHeaders),
    ("source.address", Attr::SourceAddress),
    ("destination.address", Attr::DestinationAddress),
    ("upstream.address", Attr::UpstreamAddress),
    ("xds.cluster_name", Attr::ClusterName),
    ("xds.route_name", Attr::RouteName),
];

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Str(String),
    Bool(bool),
    Null,
}

/// What a request offers an expression.
pub trait Attributes {
    /// A scalar attribute (`None`: not available for this request, an error in CEL).
    fn get(&self, attr: Attr) -> Option<Value>;
    /// One header of `request.headers` / `response.headers` (name lower-case).
    fn header(&self, map: Attr, name: &str) -> Option<String>;
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Attr(Attr),
    Header(Attr, String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Op, Box<Expr>, Box<Expr>),
    /// `'name' in request.headers`.
    HasHeader(Attr, String),
    Call(Method, Box<Expr>, Box<Expr>),
    /// CEL's `string(x)` conversion.
    ToString(Box<Expr>),
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A string method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    StartsWith,
    EndsWith,
    Contains,
}

/// Why an expression was refused, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelError(pub String);

impl fmt::Display for CelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Str(String),
    Ident(String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, CelError> {
    const SYMS: [&str; 15] = [
        "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",",
    ];
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    'outer: while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let end = src[i + 1..].find(c).ok_or_else(|| {
                CelError(format!("unterminated string starting at column {}", i + 1))
            })?;
            out.push(Tok::Str(src[i + 1..i + 1 + end].to_string()));
            i += end + 2;
            continue;
        }
        if c.is_ascii_digit() {
            let len = src[i..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(src.len() - i);
            let n = src[i..i + len]
                .parse()
                .map_err(|_| CelError(format!("number at column {} is too large", i + 1)))?;
            out.push(Tok::Int(n));
            i += len;
            // CEL's unsigned suffix: `0u`.
            if b.get(i) == Some(&b'u') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let len = src[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(src.len() - i);
            out.push(Tok::Ident(src[i..i + len].to_string()));
            i += len;
            continue;
        }
        for s in SYMS {
            if src[i..].starts_with(s) {
                out.push(Tok::Sym(s));
                i += s.len();
                continue 'outer;
            }
        }
        return Err(CelError(format!(
            "unexpected {c:?} at column {}: weft's CEL subset has ==, !=, <, <=, >, >=, &&, ||, !, in, parentheses and string methods",
            i + 1
        )));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn eat(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.at += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, s: &str) -> Result<(), CelError> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(CelError(format!("expected `{s}` after token {}", self.at)))
        }
    }

    fn or(&mut self) -> Result<Expr, CelError> {
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, CelError> {
        let mut e = self.rel()?;
        while self.eat("&&") {
            e = Expr::And(Box::new(e), Box::new(self.rel()?));
        }
        Ok(e)
    }

    fn rel(&mut self) -> Result<Expr, CelError> {
        let left = self.unary()?;
        if matches!(self.peek(), Some(Tok::Ident(i)) if i == "in") {
            self.at += 1;
            let right = self.unary()?;
            return match (left, right) {
                (Expr::Lit(Value::Str(name)), Expr::Attr(m @ (Attr::RequestHeaders | Attr::ResponseHeaders))) => {
                    Ok(Expr::HasHeader(m, name.to_ascii_lowercase()))
                }
                _ => Err(CelError("`in` is supported only as 'header-name' in request.headers (or response.headers)".into())),
            };
        }
        let ops = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        for (s, op) in ops {
            if self.eat(s) {
                let right = self.unary()?;
                return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
            }
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, CelError> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        let mut e = self.primary()?;
        while self.eat(".") {
            let Some(Tok::Ident(m)) = self.peek().cloned() else {
                return Err(CelError("expected a method name after `.`".into()));
            };
            self.at += 1;
            let method = match m.as_str() {
                "startsWith" => Method::StartsWith,
                "endsWith" => Method::EndsWith,
                "contains" => Method::Contains,
                other => {
                    return Err(CelError(format!(
                        "method `{other}` is not supported (weft's CEL subset has startsWith, endsWith, contains)"
                    )))
                }
            };
            self.expect("(")?;
            let arg = self.or()?;
            self.expect(")")?;
            e = Expr::Call(method, Box::new(e), Box::new(arg));
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, CelError> {
        let tok = self
            .peek()
            .cloned()
            .ok_or_else(|| CelError("the expression ends where a value was expected".into()))?;
        self.at += 1;
        match tok {
            Tok::Int(n) => Ok(Expr::Lit(Value::Int(n))),
            Tok::Str(s) => Ok(Expr::Lit(Value::Str(s))),
            Tok::Sym("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Ident(i) if i == "true" || i == "false" => Ok(Expr::Lit(Value::Bool(i == "true"))),
            Tok::Ident(i) if i == "null" => Ok(Expr::Lit(Value::Null)),
            Tok::Ident(i) if i == "string" && self.eat("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(Expr::ToString(Box::new(e)))
            }
            Tok::Ident(first) => self.attribute(first),
            Tok::Sym(s) => Err(CelError(format!(
                "unexpected `{s}` where a value was expected"
            ))),
        }
    }

    /// `a.b` (the longest known attribute name), then `['header']` on a header map.
    fn attribute(&mut self, first: String) -> Result<Expr, CelError> {
        let mut name = first;
        while let (Some(Tok::Sym(".")), Some(Tok::Ident(next))) =
            (self.toks.get(self.at), self.toks.get(self.at + 1))
        {
            if !ATTRS
                .iter()
                .any(|(n, _)| n.starts_with(&format!("{name}.{next}")))
            {
                break;
            }
            name = format!("{name}.{next}");
            self.at += 2;
        }
        let attr = ATTRS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                let known: Vec<&str> = ATTRS.iter().map(|(n, _)| *n).collect();
                CelError(format!(
                    "unknown attribute `{name}`: weft knows {}",
                    known.join(", ")
                ))
            })?;
        if self.eat("[") {
            let Some(Tok::Str(h)) = self.peek().cloned() else {
                return Err(CelError(format!(
                    "`{name}[...]` takes a quoted header name"
                )));
            };
            self.at += 1;
            self.expect("]")?;
            if !matches!(attr, Attr::RequestHeaders | Attr::ResponseHeaders) {
                return Err(CelError(format!("`{name}` is not a map")));
            }
            return Ok(Expr::Header(attr, h.to_ascii_lowercase()));
        }
        Ok(Expr::Attr(attr))
    }
}

/// Parses an expression of the supported subset.
pub fn parse(src: &str) -> Result<Expr, CelError> {
    let mut p = Parser {
        toks: lex(src)?,
        at: 0,
    };
    if p.toks.is_empty() {
        return Err(CelError("the expression is empty".into()));
    }
    let e = p.or()?;
    if p.at != p.toks.len() {
        return Err(CelError(format!(
            "unexpected {:?} after a complete expression",
            p.toks[p.at]
        )));
    }
    Ok(e)
}

type Eval = Result<Value, ()>;

impl Expr {
    /// Whether the expression is `true` for this request (errors are not).
    pub fn matches(&self, a: &dyn Attributes) -> bool {
        self.eval(a) == Ok(Value::Bool(true))
    }

    /// The expression's value for this request as a metric label shows it (strings as they
    /// are, numbers in decimal, `true`/`false`); `None` when it is an error or null.
    pub fn label_value(&self, a: &dyn Attributes) -> Option<String> {
        match self.eval(a).ok()? {
            Value::Str(s) => Some(s),
            Value::Int(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => None,
        }
    }

    fn eval(&self, a: &dyn Attributes) -> Eval {
        match self {
            Expr::ToString(e) => Ok(Value::Str(match e.eval(a)? {
                Value::Str(s) => s,
                Value::Int(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => return Err(()),
            })),
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Attr(at) => a.get(*at).ok_or(()),
            Expr::Header(m, h) => a.header(*m, h).map(Value::Str).ok_or(()),
            Expr::HasHeader(m, h) => Ok(Value::Bool(a.header(*m, h).is_some())),
            Expr::Not(e) => match e.eval(a)? {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                _ => Err(()),
            },
            Expr::And(l, r) => logic(l.eval(a), || r.eval(a), false),
            Expr::Or(l, r) => logic(l.eval(a), || r.eval(a), true),
            Expr::Cmp(op, l, r) => compare(*op, l.eval(a)?, r.eval(a)?),
            Expr::Call(m, s, arg) => match (s.eval(a)?, arg.eval(a)?) {
                (Value::Str(s), Value::Str(x)) => Ok(Value::Bool(match m {
                    Method::StartsWith => s.starts_with(&x),
                    Method::EndsWith => s.ends_with(&x),
                    Method::Contains => s.contains(&x),
                })),
                _ => Err(()),
            },
        }
    }
}

/// CEL's commutative `&&` / `||`: the deciding value wins over an error on the other side.
fn logic(l: Eval, r: impl FnOnce() -> Eval, decides: bool) -> Eval {
    if l == Ok(Value::Bool(decides)) {
        return l;
    }
    let r = r();
    match (l, r) {
        (_, Ok(Value::Bool(b))) if b == decides => Ok(Value::Bool(b)),
        (Ok(Value::Bool(_)), Ok(Value::Bool(b))) => Ok(Value::Bool(b)),
        _ => Err(()),
    }
}

fn compare(op: Op, l: Value, r: Value) -> Eval {
    use std::cmp::Ordering;
    let ord = match (&l, &r) {
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Str(a), Value::Str(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Null, Value::Null) => Ordering::Equal,
        // CEL: values of different types are never equal, and do not order.
        _ => {
            return match op {
                Op::Eq => Ok(Value::Bool(false)),
                Op::Ne => Ok(Value::Bool(true)),
                _ => Err(()),
            }
        }
    };
    Ok(Value::Bool(match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    }))
}

#[cfg(test)]
#[path = "cel_tests.rs"]
mod tests;
