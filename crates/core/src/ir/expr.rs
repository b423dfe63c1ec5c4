//! Scalar expressions over the columns of one input row. The extension produces `Sql` nodes:
//! expression text from PostgreSQL's deparser with `$n` where the n-th argument goes. The
//! other variants are a small typed language the in-memory evaluator understands, so that the
//! delta rules can be checked against recomputation without a server.

/// A value in the in-memory evaluator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// SQL text with numbered holes: `["upper(", $1, ")"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub pieces: Vec<TemplatePiece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePiece {
    Text(String),
    /// Zero-based index into the `Sql` node's arguments.
    Arg(usize),
}

impl Template {
    /// Split deparsed SQL at its `$n` parameter references (1-based in the text, 0-based in
    /// the result). `$` inside string literals and quoted identifiers is left alone.
    pub fn parse(sql: &str) -> Template {
        let chars: Vec<char> = sql.chars().collect();
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' || c == '"' {
                // copy the quoted run, with doubled quotes inside it
                text.push(c);
                i += 1;
                while i < chars.len() {
                    text.push(chars[i]);
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            text.push(c);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            if c == '$' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && chars[end].is_ascii_digit() {
                    end += 1;
                }
                let n: usize = chars[start..end]
                    .iter()
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0);
                if n > 0 {
                    if !text.is_empty() {
                        pieces.push(TemplatePiece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(TemplatePiece::Arg(n - 1));
                    i = end;
                    continue;
                }
            }
            text.push(c);
            i += 1;
        }
        if !text.is_empty() {
            pieces.push(TemplatePiece::Text(text));
        }
        Template { pieces }
    }

    /// Fill the holes with the given SQL fragments (parenthesised).
    pub fn fill(&self, args: &[String]) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                TemplatePiece::Text(t) => out.push_str(t),
                TemplatePiece::Arg(i) => {
                    out.push('(');
                    out.push_str(args.get(*i).map(String::as_str).unwrap_or("NULL"));
                    out.push(')');
                }
            }
        }
        out
    }
}

/// A scalar expression over one input row.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The input row's column at this index.
    Col(usize),
    Const(Value),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    IsNull(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    /// Opaque SQL from PostgreSQL's deparser; `args` fill the template's holes.
    Sql {
        template: Template,
        args: Vec<Expr>,
    },
}

impl Expr {
    pub fn truth() -> Expr {
        Expr::Const(Value::Bool(true))
    }

    pub fn col(i: usize) -> Expr {
        Expr::Col(i)
    }

    pub fn eq(a: Expr, b: Expr) -> Expr {
        Expr::Cmp(CmpOp::Eq, Box::new(a), Box::new(b))
    }

    /// The same expression with every column index moved by `offset`.
    pub fn shifted(&self, offset: usize) -> Expr {
        self.map_cols(&|i| Expr::Col(i + offset))
    }

    /// The expression with each column reference replaced by `f(index)`.
    pub fn map_cols(&self, f: &dyn Fn(usize) -> Expr) -> Expr {
        let m = |e: &Expr| Box::new(e.map_cols(f));
        match self {
            Expr::Col(i) => f(*i),
            Expr::Const(v) => Expr::Const(v.clone()),
            Expr::Cmp(op, a, b) => Expr::Cmp(*op, m(a), m(b)),
            Expr::And(xs) => Expr::And(xs.iter().map(|x| x.map_cols(f)).collect()),
            Expr::Or(xs) => Expr::Or(xs.iter().map(|x| x.map_cols(f)).collect()),
            Expr::Not(a) => Expr::Not(m(a)),
            Expr::IsNull(a) => Expr::IsNull(m(a)),
            Expr::Add(a, b) => Expr::Add(m(a), m(b)),
            Expr::Sql { template, args } => Expr::Sql {
                template: template.clone(),
                args: args.iter().map(|x| x.map_cols(f)).collect(),
            },
        }
    }

    /// Column indexes this expression reads.
    pub fn columns(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_columns(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Col(i) => out.push(*i),
            Expr::Const(_) => {}
            Expr::Cmp(_, a, b) | Expr::Add(a, b) => {
                a.collect_columns(out);
                b.collect_columns(out);
            }
            Expr::And(xs) | Expr::Or(xs) => xs.iter().for_each(|x| x.collect_columns(out)),
            Expr::Not(a) | Expr::IsNull(a) => a.collect_columns(out),
            Expr::Sql { args, .. } => args.iter().for_each(|x| x.collect_columns(out)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_at_parameters_but_not_inside_literals() {
        let t = Template::parse("upper($1) || '$2' || \"$3\" || $12");
        assert_eq!(
            t.pieces,
            vec![
                TemplatePiece::Text("upper(".into()),
                TemplatePiece::Arg(0),
                TemplatePiece::Text(") || '$2' || \"$3\" || ".into()),
                TemplatePiece::Arg(11),
            ]
        );
        let mut args: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
        args[0] = "x.a".into();
        assert_eq!(t.fill(&args), "upper((x.a)) || '$2' || \"$3\" || (c11)");
    }

    #[test]
    fn doubled_quotes_stay_inside_the_literal() {
        let t = Template::parse("'it''s $1' = $1");
        assert_eq!(t.fill(&["v".into()]), "'it''s $1' = (v)");
    }
}
