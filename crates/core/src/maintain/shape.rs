//! The shape of a defining query as the extension's analyzer reports it, and the choice of a
//! maintenance strategy for it. Choosing is pure: it needs only which operators the query
//! uses, never the server.

use super::{AggKind, AggState, Algebraic, Recompute, Strategy};
use crate::ir::{Expr, Rel, Template};

/// An aggregate call in the query.
#[derive(Debug, Clone)]
pub struct AggCall {
    /// Function name when it lives in pg_catalog (`count`, `sum`, `min`, ...), else `None`.
    pub builtin_name: Option<String>,
    pub star: bool,
    pub distinct: bool,
    pub ordered: bool,
    /// The argument over the FROM row (first argument only).
    pub arg: Option<Expr>,
    /// Whether the argument type is an exact number (int2, int4, int8, numeric).
    pub arg_is_exact: bool,
    /// Whether the argument has a collation (text and the like).
    pub arg_collatable: bool,
    /// Whether the argument is `numeric` without a declared scale: its values' scales vary,
    /// and a SUM prints with the largest of them.
    pub arg_scale_varies: bool,
    pub filter: Option<Expr>,
    pub result_type: String,
}

/// One output column.
#[derive(Debug, Clone)]
pub struct Target {
    /// Over the FROM row (for ungrouped queries).
    pub expr: Option<Expr>,
    /// Over `[keys, aggregates]` (for grouped queries), when expressible.
    pub grouped: Option<Expr>,
    /// The group key or DISTINCT ON key this column is, if it is exactly one.
    pub key_index: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum Top {
    Plain,
    Distinct,
    /// DISTINCT ON keys, as indexes of visible columns (None when a key is not visible).
    DistinctOn(Vec<Option<usize>>),
    Grouped {
        keys: Vec<Expr>,
        key_types: Vec<String>,
        aggs: Vec<AggCall>,
        has_having: bool,
    },
}

/// What the analyzer tells the planner.
#[derive(Debug, Clone)]
pub struct QueryShape {
    /// The FROM/WHERE part over the sources' current contents.
    pub from: Rel,
    pub targets: Vec<Target>,
    pub target_types: Vec<String>,
    pub top: Top,
    /// Per source (by `SourceId`), per scanned column: declared NOT NULL.
    pub not_null: Vec<Vec<bool>>,
}

/// Pick the strategy and build the strategy's input (`body`) for `shape`, or say why the
/// query cannot be maintained differentially.
pub fn choose(shape: &QueryShape) -> Result<(Rel, Strategy), String> {
    let project = |exprs: Vec<Expr>| Rel::Project {
        input: Box::new(shape.from.clone()),
        exprs,
    };
    let plain_exprs = || -> Result<Vec<Expr>, String> {
        shape
            .targets
            .iter()
            .map(|t| {
                t.expr
                    .clone()
                    .ok_or_else(|| "an output column that is not a plain expression".to_string())
            })
            .collect()
    };
    match &shape.top {
        Top::Plain => Ok((project(plain_exprs()?), Strategy::Linear)),
        Top::Distinct => Ok((project(plain_exprs()?), Strategy::Distinct)),
        Top::DistinctOn(keys) => {
            let cols: Vec<usize> = keys
                .iter()
                .map(|k| {
                    k.ok_or_else(|| {
                        "DISTINCT ON an expression that is not an output column".to_string()
                    })
                })
                .collect::<Result<_, _>>()?;
            let exprs = plain_exprs()?;
            let key_exprs = cols.iter().map(|c| exprs[*c].clone()).collect();
            let key_types = cols
                .iter()
                .map(|c| shape.target_types[*c].clone())
                .collect();
            Ok((
                project(key_exprs),
                Strategy::Recompute(Recompute {
                    key_columns: cols,
                    key_types,
                }),
            ))
        }
        Top::Grouped {
            keys,
            key_types,
            aggs,
            has_having,
        } => {
            if let Some(plan) = algebraic(shape, keys, key_types, aggs, *has_having) {
                return Ok(plan);
            }
            // recompute the affected groups: every key must be an output column
            let mut key_columns = Vec::with_capacity(keys.len());
            for i in 0..keys.len() {
                let col = shape
                    .targets
                    .iter()
                    .position(|t| t.key_index == Some(i))
                    .ok_or_else(|| "a GROUP BY key that is not an output column".to_string())?;
                key_columns.push(col);
            }
            Ok((
                project(keys.clone()),
                Strategy::Recompute(Recompute {
                    key_columns,
                    key_types: key_types.clone(),
                }),
            ))
        }
    }
}

fn algebraic(
    shape: &QueryShape,
    keys: &[Expr],
    key_types: &[String],
    aggs: &[AggCall],
    has_having: bool,
) -> Option<(Rel, Strategy)> {
    if has_having {
        return None;
    }
    let mut exprs: Vec<Expr> = keys.to_vec();
    let mut states = Vec::new();
    let mut scaled: Vec<(usize, Expr)> = Vec::new();
    for agg in aggs {
        if agg.distinct || agg.ordered {
            return None;
        }
        let kind = match (agg.builtin_name.as_deref(), agg.star) {
            (Some("count"), true) => AggKind::CountStar,
            (Some("count"), false) => AggKind::Count,
            (Some("sum"), false) if agg.arg_is_exact => AggKind::Sum,
            (Some("avg"), false) if agg.arg_is_exact => AggKind::Avg,
            (Some("min"), false) if !agg.arg_collatable => AggKind::Min,
            (Some("max"), false) if !agg.arg_collatable => AggKind::Max,
            _ => return None,
        };
        let arg = match &agg.arg {
            Some(a) if kind != AggKind::CountStar => {
                exprs.push(a.clone());
                Some(exprs.len() - 1)
            }
            None if kind == AggKind::CountStar => None,
            _ => return None,
        };
        let filter = agg.filter.as_ref().map(|f| {
            exprs.push(f.clone());
            exprs.len() - 1
        });
        let arg_not_null =
            matches!(&agg.arg, Some(Expr::Col(c)) if shape.from.never_null(*c, &shape.not_null));
        states.push(AggState {
            kind,
            arg,
            filter,
            result_type: agg.result_type.clone(),
            scale: None,
            arg_not_null,
        });
        if let (true, true, Some(a)) = (kind.has_sum(), agg.arg_scale_varies, &agg.arg) {
            scaled.push((states.len() - 1, a.clone()));
        }
    }
    // a SUM (or AVG) of numeric values of varying scale prints with the largest scale among
    // the counted values; a second sum counts the values of each scale, 10^(12 * scale) per
    // value (see `Algebraic::agg_value`), so that largest scale follows from the delta alone
    for (j, arg) in scaled {
        exprs.push(Expr::Sql {
            template: Template::parse("pg_catalog.power(10::numeric, 12 * pg_catalog.scale($1))"),
            args: vec![arg],
        });
        let counts = exprs.len() - 1;
        let (filter, arg_not_null) = (states[j].filter, states[j].arg_not_null);
        states.push(AggState {
            kind: AggKind::Sum,
            arg: Some(counts),
            filter,
            result_type: "numeric".into(),
            scale: None,
            arg_not_null,
        });
        states[j].scale = Some(states.len() - 1);
    }
    let targets: Vec<Expr> = shape
        .targets
        .iter()
        .map(|t| t.grouped.clone())
        .collect::<Option<_>>()?;
    let key_visible = (0..keys.len())
        .map(|i| shape.targets.iter().position(|t| t.key_index == Some(i)))
        .collect();
    let body = Rel::Project {
        input: Box::new(shape.from.clone()),
        exprs,
    };
    Some((
        body,
        Strategy::Algebraic(Algebraic {
            keys: keys.len(),
            aggs: states,
            targets,
            key_visible,
            key_types: key_types.to_vec(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(name: &str, star: bool, exact: bool) -> AggCall {
        AggCall {
            builtin_name: Some(name.into()),
            star,
            distinct: false,
            ordered: false,
            arg: (!star).then_some(Expr::Col(1)),
            arg_is_exact: exact,
            arg_collatable: false,
            arg_scale_varies: false,
            filter: None,
            result_type: "numeric".into(),
        }
    }

    fn grouped(aggs: Vec<AggCall>, having: bool) -> QueryShape {
        let n = aggs.len();
        let mut targets = vec![Target {
            expr: None,
            grouped: Some(Expr::Col(0)),
            key_index: Some(0),
        }];
        targets.extend((0..n).map(|j| Target {
            expr: None,
            grouped: Some(Expr::Col(1 + j)),
            key_index: None,
        }));
        QueryShape {
            from: Rel::Scan {
                source: 0,
                arity: 2,
            },
            target_types: vec!["integer".into(); n + 1],
            targets,
            top: Top::Grouped {
                keys: vec![Expr::Col(0)],
                key_types: vec!["integer".into()],
                aggs,
                has_having: having,
            },
            not_null: vec![vec![true, false]],
        }
    }

    #[test]
    fn count_sum_avg_min_max_are_algebraic() {
        let shape = grouped(
            vec![
                agg("count", true, false),
                agg("sum", false, true),
                agg("avg", false, true),
                agg("min", false, false),
                agg("max", false, true),
            ],
            false,
        );
        let (_, s) = choose(&shape).expect("supported");
        assert_eq!(s.name(), "algebraic aggregate");
    }

    #[test]
    fn collated_min_float_sums_and_having_recompute_groups() {
        let mut text_min = agg("min", false, false);
        text_min.arg_collatable = true;
        for shape in [
            grouped(vec![text_min], false),
            grouped(vec![agg("sum", false, false)], false),
            grouped(vec![agg("count", true, false)], true),
        ] {
            let (_, s) = choose(&shape).expect("supported");
            assert_eq!(s.name(), "recompute affected groups");
        }
    }

    #[test]
    fn hidden_group_keys_need_the_algebraic_strategy() {
        let mut shape = grouped(vec![agg("string_agg", false, false)], false);
        shape.targets.remove(0);
        assert!(choose(&shape).unwrap_err().contains("GROUP BY key"));
        let mut shape = grouped(vec![agg("sum", false, true)], false);
        shape.targets.remove(0);
        let (_, s) = choose(&shape).expect("algebraic keeps the key hidden");
        assert_eq!(s.name(), "algebraic aggregate");
    }

    #[test]
    fn a_sum_knows_when_its_argument_is_never_null() {
        let arg_not_null = |not_null: Vec<bool>| {
            let mut shape = grouped(vec![agg("sum", false, true)], false);
            shape.not_null = vec![not_null];
            match choose(&shape).expect("supported").1 {
                Strategy::Algebraic(a) => a.aggs[0].arg_not_null,
                other => panic!("{}", other.name()),
            }
        };
        assert!(arg_not_null(vec![false, true]));
        assert!(!arg_not_null(vec![true, false]));
        assert!(!arg_not_null(Vec::new()));
    }
}
