//! Rendering operator trees as SQL. Every operator becomes a subquery whose columns are named
//! `c1 .. cn` plus the row weight `__pgt_w`; the change of each source is one CTE over its change buffer, restricted to the refresh window and shared by every use in the
//! tree.

use super::{quote_literal, Ident, QualifiedName};
use crate::ir::{Expr, Rel, SourceId, Value};

/// Weight column of every rendered relation.
pub const WEIGHT: &str = "__pgt_w";

/// How to read one source: its table and used columns, and its change buffer.
#[derive(Debug, Clone)]
pub struct SourceSql {
    pub relation: QualifiedName,
    /// The columns the query uses, in the order `Scan` and `Delta` produce them.
    pub columns: Vec<Ident>,
    pub buffer: QualifiedName,
    /// SQL predicate over buffer alias `b` selecting the change rows of the refresh window.
    pub window: String,
    /// A LIMIT on the change rows read, as SQL (a parameter), or `None`. The caller gives it a
    /// value no number of rows reaches: it never cuts, but a generic plan, not knowing the
    /// value, estimates a tenth of the rows (the plans kept for small changes then look up
    /// stored rows by index rather than hashing the whole stream table).
    pub limit: Option<String>,
}

/// A rendered query: CTE definitions (name, body) and the main SELECT.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub ctes: Vec<(String, String)>,
    pub body: String,
}

impl Rendered {
    /// The `WITH name AS (...), ...` prefix (empty without CTEs), with `extra_ctes` after the
    /// delta CTEs. The caller appends the main statement. PostgreSQL inlines a CTE read once
    /// and materializes one read more than once (a change read by several join terms).
    pub fn with_ctes(&self, extra_ctes: &[(String, String)]) -> String {
        let all: Vec<String> = self
            .ctes
            .iter()
            .chain(extra_ctes)
            .map(|(name, body)| format!("{name} AS (\n{body}\n)"))
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!("WITH {}\n", all.join(",\n"))
        }
    }
}

/// The name of source `s`'s delta CTE.
pub fn delta_cte(source: SourceId) -> String {
    format!("__pgt_d{source}")
}

pub fn column(i: usize) -> String {
    format!("c{}", i + 1)
}

/// Render `rel`. Delta CTEs for the sources it reads are returned in `ctes`.
pub fn render(rel: &Rel, sources: &[SourceSql]) -> Rendered {
    let mut r = Renderer {
        sources,
        ctes: Vec::new(),
        alias: 0,
    };
    let body = r.rel(rel);
    Rendered { ctes: r.ctes, body }
}

/// SQL for `expr`, with column `i` rendered by `col(i)`.
pub fn render_expr(expr: &Expr, col: &dyn Fn(usize) -> String) -> String {
    let r = |e: &Expr| render_expr(e, col);
    match expr {
        Expr::Col(i) => col(*i),
        Expr::Const(v) => match v {
            Value::Null => "NULL".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => format!("({i})"),
            Value::Text(t) => quote_literal(t),
        },
        Expr::Cmp(op, a, b) => format!("({} {} {})", r(a), op.sql(), r(b)),
        Expr::And(xs) if xs.is_empty() => "true".to_string(),
        Expr::And(xs) => format!("({})", xs.iter().map(r).collect::<Vec<_>>().join(" AND ")),
        Expr::Or(xs) if xs.is_empty() => "false".to_string(),
        Expr::Or(xs) => format!("({})", xs.iter().map(r).collect::<Vec<_>>().join(" OR ")),
        Expr::Not(a) => format!("(NOT {})", r(a)),
        Expr::IsNull(a) => format!("({} IS NULL)", r(a)),
        Expr::Add(a, b) => format!("({} + {})", r(a), r(b)),
        Expr::Sql { template, args } => {
            let args: Vec<String> = args.iter().map(r).collect();
            format!("({})", template.fill(&args))
        }
    }
}

struct Renderer<'a> {
    sources: &'a [SourceSql],
    ctes: Vec<(String, String)>,
    alias: usize,
}

impl Renderer<'_> {
    fn next_alias(&mut self, prefix: &str) -> String {
        self.alias += 1;
        format!("{prefix}{}", self.alias)
    }

    fn columns_of(alias: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{alias}.{}", column(i))).collect()
    }

    fn select_list(exprs: &[String], weight: &str) -> String {
        let mut items: Vec<String> = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS {}", column(i)))
            .collect();
        items.push(format!("{weight} AS {WEIGHT}"));
        items.join(", ")
    }

    fn source(&self, id: SourceId) -> &SourceSql {
        &self.sources[id]
    }

    fn rel(&mut self, rel: &Rel) -> String {
        match rel {
            Rel::Scan { source, .. } => {
                let s = self.source(*source);
                let cols: Vec<String> = s.columns.iter().map(|c| format!("t.{c}")).collect();
                format!(
                    "SELECT {} FROM {} t",
                    Self::select_list(&cols, "1"),
                    s.relation
                )
            }
            Rel::Delta { source, .. } => {
                let name = delta_cte(*source);
                if !self.ctes.iter().any(|(n, _)| *n == name) {
                    let s = self.source(*source);
                    let cols: Vec<String> = s.columns.iter().map(|c| format!("b.{c}")).collect();
                    // Not consolidated: every rule only sums weights, and the strategies that
                    // need one row per value with its net weight group the rows themselves.
                    let limit = s
                        .limit
                        .as_ref()
                        .map(|l| format!(" LIMIT {l}"))
                        .unwrap_or_default();
                    let body = format!(
                        "SELECT {} FROM {} b WHERE {}{limit}",
                        Self::select_list(&cols, "b.__pgt_weight::int4"),
                        s.buffer,
                        s.window
                    );
                    self.ctes.push((name.clone(), body));
                }
                format!("SELECT * FROM {name}")
            }
            Rel::Filter { input, predicate } => {
                let a = self.next_alias("f");
                let inner = self.rel(input);
                let cols = Self::columns_of(&a, input.arity());
                let pred = render_expr(predicate, &|i| format!("{a}.{}", column(i)));
                format!(
                    "SELECT {} FROM ({inner}) {a} WHERE {pred}",
                    Self::select_list(&cols, &format!("{a}.{WEIGHT}"))
                )
            }
            Rel::Project { input, exprs } => {
                let a = self.next_alias("p");
                let inner = self.rel(input);
                let items: Vec<String> = exprs
                    .iter()
                    .map(|e| render_expr(e, &|i| format!("{a}.{}", column(i))))
                    .collect();
                format!(
                    "SELECT {} FROM ({inner}) {a}",
                    Self::select_list(&items, &format!("{a}.{WEIGHT}"))
                )
            }
            Rel::Join { left, right, on } | Rel::LeftJoin { left, right, on } => {
                let outer = matches!(rel, Rel::LeftJoin { .. });
                let (l, r) = (self.next_alias("l"), self.next_alias("r"));
                let (ls, rs) = (self.rel(left), self.rel(right));
                let (nl, nr) = (left.arity(), right.arity());
                let mut cols = Self::columns_of(&l, nl);
                cols.extend(Self::columns_of(&r, nr));
                let cond = join_condition(on, &l, nl, &r);
                let (kind, weight) = if outer {
                    (
                        "LEFT JOIN",
                        format!("{l}.{WEIGHT} * COALESCE({r}.{WEIGHT}, 1)"),
                    )
                } else {
                    ("JOIN", format!("{l}.{WEIGHT} * {r}.{WEIGHT}"))
                };
                format!(
                    "SELECT {} FROM ({ls}) {l} {kind} ({rs}) {r} ON {cond}",
                    Self::select_list(&cols, &weight)
                )
            }
            Rel::AntiJoin { left, right, on } => {
                let l = self.next_alias("l");
                let ls = self.rel(left);
                let matches = self.match_weight(&l, left.arity(), right, on);
                format!(
                    "SELECT {} FROM ({ls}) {l} WHERE {matches} = 0",
                    Self::select_list(
                        &Self::columns_of(&l, left.arity()),
                        &format!("{l}.{WEIGHT}")
                    )
                )
            }
            Rel::AntiJoinChange {
                left,
                right_new,
                changed,
                on,
            } => {
                let l = self.next_alias("l");
                let ls = self.rel(left);
                let nl = left.arity();
                let now = self.match_weight(&l, nl, right_new, on);
                let change = self.match_weight(&l, nl, changed, on);
                let touched = {
                    let c = self.next_alias("t");
                    let cs = self.rel(changed);
                    let cond = join_condition(on, &l, nl, &c);
                    format!("EXISTS (SELECT 1 FROM ({cs}) {c} WHERE {cond})")
                };
                let x = self.next_alias("x");
                let weight = format!(
                    "{l}.{WEIGHT} * (({x}.now = 0)::int - (({x}.now - {x}.change) = 0)::int)"
                );
                format!(
                    "SELECT {} FROM ({ls}) {l} CROSS JOIN LATERAL (SELECT {now} AS now, {change} AS change) {x} \
                     WHERE {touched} AND {weight} <> 0",
                    Self::select_list(&Self::columns_of(&l, nl), &weight)
                )
            }
            Rel::UnionAll(inputs) => {
                let parts: Vec<String> = inputs
                    .iter()
                    .map(|i| format!("({})", self.rel(i)))
                    .collect();
                parts.join(" UNION ALL ")
            }
            Rel::Negate(input) => {
                let a = self.next_alias("n");
                let inner = self.rel(input);
                format!(
                    "SELECT {} FROM ({inner}) {a}",
                    Self::select_list(
                        &Self::columns_of(&a, input.arity()),
                        &format!("-{a}.{WEIGHT}")
                    )
                )
            }
        }
    }

    /// `COALESCE((SELECT sum(weight) FROM right WHERE on), 0)` for the left row aliased `l`.
    fn match_weight(&mut self, l: &str, nl: usize, right: &Rel, on: &Expr) -> String {
        let r = self.next_alias("m");
        let rs = self.rel(right);
        let cond = join_condition(on, l, nl, &r);
        format!("COALESCE((SELECT sum({r}.{WEIGHT}) FROM ({rs}) {r} WHERE {cond}), 0)")
    }
}

/// A join condition over the columns of a left input (the first `nl`, aliased `l`) and a right
/// one (the rest, aliased `r`).
fn join_condition(on: &Expr, l: &str, nl: usize, r: &str) -> String {
    render_expr(on, &|i| {
        if i < nl {
            format!("{l}.{}", column(i))
        } else {
            format!("{r}.{}", column(i - nl))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::delta;

    fn sources() -> Vec<SourceSql> {
        (0..2)
            .map(|i| SourceSql {
                relation: QualifiedName::new("public", format!("t{i}")),
                columns: vec![Ident::new("id"), Ident::new("v")],
                buffer: QualifiedName::new("pgtrickle_changes", format!("changes_{i}")),
                window: "true".into(),
                limit: None,
            })
            .collect()
    }

    #[test]
    fn a_join_delta_reads_each_buffer_through_one_cte() {
        let q = Rel::Join {
            left: Box::new(Rel::Scan {
                source: 0,
                arity: 2,
            }),
            right: Box::new(Rel::Scan {
                source: 1,
                arity: 2,
            }),
            on: Expr::eq(Expr::Col(0), Expr::Col(2)),
        };
        let r = render(&delta(&q), &sources());
        assert_eq!(r.ctes.len(), 2);
        assert!(r.ctes[0].1.contains("FROM pgtrickle_changes.changes_0 b"));
        assert_eq!(r.body.matches("UNION ALL").count(), 2);
        assert!(r.body.contains("FROM public.t1 t"));
        let sql = format!("{}{}", r.with_ctes(&[]), r.body);
        assert!(sql.starts_with("WITH __pgt_d0 AS ("));
    }

    #[test]
    fn a_change_read_carries_its_limit_and_only_it() {
        let q = Rel::Scan {
            source: 0,
            arity: 2,
        };
        let mut limited = sources();
        limited[0].limit = Some("$4".into());
        let r = render(&delta(&q), &limited);
        assert!(r.ctes[0].1.ends_with("WHERE true LIMIT $4"), "{:?}", r.ctes);
        let r = render(&delta(&q), &sources());
        assert!(!r.ctes[0].1.contains("LIMIT"), "{:?}", r.ctes);
    }
}
