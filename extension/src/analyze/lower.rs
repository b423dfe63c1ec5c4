//! Lowering an analyzed defining query into the core's `QueryShape`: the FROM/WHERE part as an
//! operator tree over the sources, the output columns, and the grouping. Expressions are
//! deparsed by PostgreSQL itself (`deparse_expression`, schema-qualified) after each column
//! reference has been replaced by a parameter `$n`; the core binds `$n` to its own columns.
//!
//! Anything the differential engine does not maintain yet is reported as a reason (a string
//! naming the construct); the caller then refuses DIFFERENTIAL or falls back to FULL.

use super::compat::{expression_tree_mutator, flatten_vars};
use super::query::{c_query_text, parse_to_query};
use crate::error::PgtResult;
use crate::pg::{with_search_path, SAFE_SEARCH_PATH};
use pg_trickle_core::ir::{Expr, Rel, Template};
use pg_trickle_core::maintain::shape::{AggCall, QueryShape, Target, Top};
use pgrx::prelude::*;
use pgrx::PgList;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_void, CStr};

/// A base relation the query reads, with the columns it uses (attribute numbers and names).
#[derive(Debug, Clone)]
pub struct LoweredSource {
    pub relid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub relkind: u8,
    pub attnos: Vec<i16>,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Lowered {
    pub shape: QueryShape,
    pub sources: Vec<LoweredSource>,
    /// The query reads CURRENT_DATE (and no other clock): maintainable while the date stays.
    pub reads_current_date: bool,
}

type Unsupported = String;

/// Why a valid query cannot be maintained differentially.
#[derive(Debug, Clone)]
pub struct Blocker {
    /// The construct, as a phrase: "window functions", "LIMIT or OFFSET", ...
    pub construct: String,
    /// The query reads the clock (now(), CURRENT_DATE): its result changes without any source
    /// changing, so it is recomputed in full on every refresh whatever mode was asked for.
    pub time_dependent: bool,
}

/// Lower `text`, a canonical (schema-qualified) defining query; `Ok(Err(blocker))` when the
/// query is valid but not maintainable. It is parsed under the extension's own search path,
/// which it was written for: under a caller's path, an unqualified built-in name could resolve
/// to another schema's object.
pub fn lower_query(text: &str) -> PgtResult<Result<Lowered, Blocker>> {
    let c_text = c_query_text(text)?;
    // SAFETY: the Query and every node read below live in the current memory context for the
    // whole call; node types are checked with is_a before each cast.
    unsafe {
        let query = with_search_path(SAFE_SEARCH_PATH, || parse_to_query(&c_text))?;
        let mut lowerer = Lowerer::new(query);
        let result = lowerer.lower();
        Ok(match result {
            Err(construct) => Err(Blocker {
                construct,
                time_dependent: false,
            }),
            Ok(_) if lowerer.time_dependent.get() => Err(Blocker {
                construct: "a time-dependent function such as now() or CURRENT_TIMESTAMP".into(),
                time_dependent: true,
            }),
            Ok(mut lowered) => {
                lowered.shape.not_null = declared_not_null(&lowered.sources)?;
                Ok(Lowered {
                    reads_current_date: lowerer.reads_current_date.get(),
                    ..lowered
                })
            }
        })
    }
}

/// Per source, per column read (in `attnos` order, one entry each): whether it is declared
/// NOT NULL (and the constraint is validated; PostgreSQL 18 also has NOT NULL constraints that
/// are NOT VALID).
fn declared_not_null(sources: &[LoweredSource]) -> PgtResult<Vec<Vec<bool>>> {
    sources
        .iter()
        .map(|source| {
            Ok(crate::pg::query_one::<Vec<bool>>(
                "SELECT array_agg(COALESCE(a.attnotnull, false)
                                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                                                  WHERE c.conrelid = $1 AND c.contype = 'n'
                                                    AND NOT c.convalidated
                                                    AND u.attnum = ANY (c.conkey))
                                  ORDER BY u.i)
                 FROM pg_catalog.unnest($2::pg_catalog.int2[]) WITH ORDINALITY AS u(attnum, i)
                 LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = $1 AND a.attnum = u.attnum",
                &[source.relid.into(), source.attnos.clone().into()],
            )?
            .unwrap_or_default())
        })
        .collect()
}

struct Lowerer {
    query: *mut pg_sys::Query,
    used: BTreeMap<i32, BTreeSet<i16>>,
    /// range-table index -> (source id, offset of its first column in the FROM row)
    placed: BTreeMap<i32, (usize, usize)>,
    sources: Vec<LoweredSource>,
    time_dependent: std::cell::Cell<bool>,
    reads_current_date: std::cell::Cell<bool>,
}

/// What the mutator replaces while deparsing one expression.
struct MutateContext<'a> {
    lowerer: &'a Lowerer,
    base: usize,
    keys: Option<&'a [*mut pg_sys::Node]>,
    aggs: Option<&'a mut Vec<*mut pg_sys::Node>>,
    params: Vec<Expr>,
    error: Option<Unsupported>,
}

const TIME_FUNCTIONS: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "timeofday",
];

unsafe extern "C-unwind" fn collect_vars(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: context is the Vec this module passes; node type checked before the cast.
    unsafe {
        if pgrx::is_a(node, pg_sys::NodeTag::T_Var) {
            let var = node.cast::<pg_sys::Var>();
            let out = &mut *context.cast::<Vec<(i32, i16, u32)>>();
            out.push(((*var).varno, (*var).varattno, (*var).varlevelsup));
            return false;
        }
        pg_sys::expression_tree_walker(node, Some(collect_vars), context)
    }
}

unsafe extern "C-unwind" fn replace_references(
    node: *mut pg_sys::Node,
    context: *mut c_void,
) -> *mut pg_sys::Node {
    if node.is_null() {
        return node;
    }
    // SAFETY: context is the MutateContext passed by `to_expr`; node types are checked first.
    unsafe {
        let ctx = &mut *context.cast::<MutateContext>();
        if let Some(keys) = ctx.keys {
            if let Some(i) = keys
                .iter()
                .position(|k| pg_sys::equal(node.cast(), (*k).cast()))
            {
                return make_param(ctx, node, Expr::Col(i));
            }
        }
        if pgrx::is_a(node, pg_sys::NodeTag::T_Aggref) {
            let nkeys = ctx.keys.map_or(0, <[_]>::len);
            return match ctx.aggs.as_deref_mut() {
                Some(aggs) => {
                    let j = match aggs
                        .iter()
                        .position(|a| pg_sys::equal(node.cast(), (*a).cast()))
                    {
                        Some(j) => j,
                        None => {
                            aggs.push(node);
                            aggs.len() - 1
                        }
                    };
                    make_param(ctx, node, Expr::Col(nkeys + j))
                }
                None => {
                    ctx.error = Some("an aggregate inside an aggregate's argument".into());
                    node
                }
            };
        }
        if pgrx::is_a(node, pg_sys::NodeTag::T_Var) {
            if ctx.keys.is_some() {
                ctx.error = Some("an output column that is neither grouped nor aggregated".into());
                return node;
            }
            let var = node.cast::<pg_sys::Var>();
            return match ctx.lowerer.position((*var).varno, (*var).varattno) {
                Some(pos) if pos >= ctx.base => make_param(ctx, node, Expr::Col(pos - ctx.base)),
                _ => {
                    ctx.error = Some("a column reference outside its join".into());
                    node
                }
            };
        }
        if pgrx::is_a(node, pg_sys::NodeTag::T_SQLValueFunction) {
            // CURRENT_DATE changes once a day: a refresh on the same date can apply a delta
            if (*node.cast::<pg_sys::SQLValueFunction>()).op
                == pg_sys::SQLValueFunctionOp::SVFOP_CURRENT_DATE
            {
                ctx.lowerer.reads_current_date.set(true);
            } else {
                ctx.lowerer.time_dependent.set(true);
            }
        }
        if pgrx::is_a(node, pg_sys::NodeTag::T_FuncExpr) {
            let funcid = (*node.cast::<pg_sys::FuncExpr>()).funcid;
            let name = pg_sys::get_func_name(funcid);
            if !name.is_null()
                && TIME_FUNCTIONS.contains(&CStr::from_ptr(name).to_string_lossy().as_ref())
            {
                ctx.lowerer.time_dependent.set(true);
            }
        }
        expression_tree_mutator(node, replace_references, context)
    }
}

/// A Param node of `node`'s type standing for `expr`.
unsafe fn make_param(
    ctx: &mut MutateContext,
    node: *mut pg_sys::Node,
    expr: Expr,
) -> *mut pg_sys::Node {
    ctx.params.push(expr);
    // SAFETY: palloc0 returns zeroed memory of the requested size in the current context.
    unsafe {
        let param = pg_sys::palloc0(std::mem::size_of::<pg_sys::Param>()).cast::<pg_sys::Param>();
        (*param).xpr.type_ = pg_sys::NodeTag::T_Param;
        (*param).paramkind = pg_sys::ParamKind::PARAM_EXTERN;
        (*param).paramid = ctx.params.len() as i32;
        (*param).paramtype = pg_sys::exprType(node);
        (*param).paramtypmod = pg_sys::exprTypmod(node);
        (*param).paramcollid = pg_sys::exprCollation(node);
        (*param).location = -1;
        param.cast()
    }
}

unsafe fn list_nodes(list: *mut pg_sys::List) -> Vec<*mut pg_sys::Node> {
    // SAFETY: callers pass node lists.
    unsafe { PgList::<pg_sys::Node>::from_pg(list).iter_ptr().collect() }
}

unsafe fn format_type(type_oid: pg_sys::Oid, typmod: i32) -> String {
    // SAFETY: format_type_extended returns a palloc'd string; called under a pinned
    // search_path so user types come out schema-qualified.
    with_search_path(SAFE_SEARCH_PATH, || unsafe {
        CStr::from_ptr(pg_sys::format_type_with_typemod(type_oid, typmod))
            .to_string_lossy()
            .into_owned()
    })
}

/// Whether values of the type can be hashed and compared (needed for row identities, change
/// consolidation and GROUP BY over changes).
unsafe fn hashable(type_oid: pg_sys::Oid) -> bool {
    // SAFETY: lookup_type_cache returns a cache entry valid for the transaction.
    unsafe {
        let flags = (pg_sys::TYPECACHE_EQ_OPR | pg_sys::TYPECACHE_HASH_EXTENDED_PROC) as i32;
        let entry = pg_sys::lookup_type_cache(type_oid, flags);
        !entry.is_null()
            && (*entry).eq_opr != pg_sys::Oid::INVALID
            && (*entry).hash_extended_proc != pg_sys::Oid::INVALID
    }
}

impl Lowerer {
    fn new(query: *mut pg_sys::Query) -> Self {
        Lowerer {
            query,
            used: BTreeMap::new(),
            placed: BTreeMap::new(),
            sources: Vec::new(),
            time_dependent: std::cell::Cell::new(false),
            reads_current_date: std::cell::Cell::new(false),
        }
    }

    /// Position of column `attno` of range-table entry `varno` in the FROM row.
    fn position(&self, varno: i32, attno: i16) -> Option<usize> {
        let (source, offset) = self.placed.get(&varno)?;
        let idx = self.sources[*source]
            .attnos
            .iter()
            .position(|a| *a == attno)?;
        Some(offset + idx)
    }

    unsafe fn flatten(&self, node: *mut pg_sys::Node) -> *mut pg_sys::Node {
        // SAFETY: node belongs to self.query.
        unsafe { flatten_vars(self.query, node) }
    }

    fn lower(&mut self) -> Result<Lowered, Unsupported> {
        // SAFETY: see lower_query.
        unsafe {
            let q = &*self.query;
            let unsupported = [
                (q.hasWindowFuncs, "window functions"),
                (
                    q.hasTargetSRFs,
                    "set-returning functions in the SELECT list",
                ),
                (
                    q.hasSubLinks,
                    "subqueries in expressions (IN, EXISTS or scalar subqueries)",
                ),
                (!q.cteList.is_null(), "WITH (common table expressions)"),
                (!q.setOperations.is_null(), "UNION, INTERSECT or EXCEPT"),
                (
                    !q.limitCount.is_null() || !q.limitOffset.is_null(),
                    "LIMIT or OFFSET",
                ),
                (!q.groupingSets.is_null(), "GROUPING SETS, ROLLUP or CUBE"),
            ];
            if let Some((_, what)) = unsupported.iter().find(|(present, _)| *present) {
                return Err(what.to_string());
            }
            let grouped = q.hasAggs || !q.groupClause.is_null();
            if grouped && !q.distinctClause.is_null() {
                return Err("DISTINCT together with GROUP BY or aggregates".into());
            }
            if (*q.jointree).fromlist.is_null() {
                return Err("a query without a FROM clause".into());
            }
            self.collect_used_columns()?;
            let from = self.lower_from()?;
            self.check_sources()?;
            let visible: Vec<*mut pg_sys::TargetEntry> =
                PgList::<pg_sys::TargetEntry>::from_pg(q.targetList)
                    .iter_ptr()
                    .filter(|te| !(**te).resjunk)
                    .collect();
            let mut target_types = Vec::new();
            for te in &visible {
                let expr = (**te).expr.cast::<pg_sys::Node>();
                let type_oid = pg_sys::exprType(expr);
                if !hashable(type_oid) {
                    return Err(format!(
                        "an output column of type {}, which has no hash function",
                        format_type(type_oid, -1)
                    ));
                }
                target_types.push(format_type(type_oid, pg_sys::exprTypmod(expr)));
            }
            let (targets, top) = if grouped {
                self.lower_grouped(&visible)?
            } else {
                let targets = visible
                    .iter()
                    .map(|te| {
                        let expr = self.flatten((**te).expr.cast());
                        Ok(Target {
                            expr: Some(self.to_expr(expr, 0, None, None)?),
                            grouped: None,
                            key_index: None,
                        })
                    })
                    .collect::<Result<Vec<_>, Unsupported>>()?;
                let top = if q.distinctClause.is_null() {
                    Top::Plain
                } else if q.hasDistinctOn {
                    Top::DistinctOn(self.clause_columns(q.distinctClause, &visible))
                } else {
                    Top::Distinct
                };
                (targets, top)
            };
            Ok(Lowered {
                shape: QueryShape {
                    from,
                    targets,
                    target_types,
                    top,
                    not_null: Vec::new(),
                },
                sources: self.sources.clone(),
                reads_current_date: false,
            })
        }
    }

    /// For each clause of a DISTINCT ON list: the visible column it names.
    unsafe fn clause_columns(
        &self,
        clauses: *mut pg_sys::List,
        visible: &[*mut pg_sys::TargetEntry],
    ) -> Vec<Option<usize>> {
        // SAFETY: clauses is a list of SortGroupClause.
        unsafe {
            PgList::<pg_sys::SortGroupClause>::from_pg(clauses)
                .iter_ptr()
                .map(|c| {
                    visible
                        .iter()
                        .position(|te| (**te).ressortgroupref == (*c).tleSortGroupRef)
                })
                .collect()
        }
    }

    unsafe fn lower_grouped(
        &mut self,
        visible: &[*mut pg_sys::TargetEntry],
    ) -> Result<(Vec<Target>, Top), Unsupported> {
        // SAFETY: see lower_query.
        unsafe {
            let q = &*self.query;
            let all_targets: Vec<*mut pg_sys::TargetEntry> =
                PgList::<pg_sys::TargetEntry>::from_pg(q.targetList)
                    .iter_ptr()
                    .collect();
            let mut key_nodes = Vec::new();
            let mut keys = Vec::new();
            let mut key_types = Vec::new();
            let mut key_refs = Vec::new();
            for clause in PgList::<pg_sys::SortGroupClause>::from_pg(q.groupClause).iter_ptr() {
                let te = all_targets
                    .iter()
                    .find(|te| (***te).ressortgroupref == (*clause).tleSortGroupRef)
                    .ok_or_else(|| "a GROUP BY clause without its expression".to_string())?;
                let node = self.flatten((**te).expr.cast());
                let type_oid = pg_sys::exprType(node);
                if !hashable(type_oid) {
                    return Err(format!(
                        "a GROUP BY key of type {}, which has no hash function",
                        format_type(type_oid, -1)
                    ));
                }
                keys.push(self.to_expr(node, 0, None, None)?);
                key_types.push(format_type(type_oid, pg_sys::exprTypmod(node)));
                key_nodes.push(node);
                key_refs.push((*clause).tleSortGroupRef);
            }
            let mut agg_nodes: Vec<*mut pg_sys::Node> = Vec::new();
            let mut targets = Vec::new();
            for te in visible {
                let node = self.flatten((**te).expr.cast());
                let grouped = self
                    .to_expr(node, 0, Some(&key_nodes), Some(&mut agg_nodes))
                    .ok();
                let key_index = key_refs
                    .iter()
                    .position(|r| *r != 0 && *r == (**te).ressortgroupref);
                targets.push(Target {
                    expr: None,
                    grouped,
                    key_index,
                });
            }
            let has_having = !q.havingQual.is_null();
            if has_having {
                // collect the aggregates HAVING uses too (recomputed from the query anyway)
                let having = self.flatten(q.havingQual);
                let _ = self.to_expr(having, 0, Some(&key_nodes), Some(&mut agg_nodes));
            }
            let mut aggs = Vec::new();
            for node in &agg_nodes {
                aggs.push(self.agg_call(node.cast())?);
            }
            Ok((
                targets,
                Top::Grouped {
                    keys,
                    key_types,
                    aggs,
                    has_having,
                },
            ))
        }
    }

    unsafe fn agg_call(&self, aggref: *mut pg_sys::Aggref) -> Result<AggCall, Unsupported> {
        // SAFETY: aggref is a valid Aggref of self.query.
        unsafe {
            let a = &*aggref;
            let builtin_name = if pg_sys::get_func_namespace(a.aggfnoid)
                == pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)
            {
                Some(
                    CStr::from_ptr(pg_sys::get_func_name(a.aggfnoid))
                        .to_string_lossy()
                        .into_owned(),
                )
            } else {
                None
            };
            let args: Vec<*mut pg_sys::TargetEntry> =
                PgList::<pg_sys::TargetEntry>::from_pg(a.args)
                    .iter_ptr()
                    .collect();
            let (arg, arg_is_exact, arg_collatable, arg_scale_varies) = match args.first() {
                Some(te) => {
                    let node = (**te).expr.cast::<pg_sys::Node>();
                    let scale_varies = pg_sys::exprType(node) == pg_sys::NUMERICOID
                        && pg_sys::exprTypmod(node) < 0;
                    let exact = [
                        pg_sys::INT2OID,
                        pg_sys::INT4OID,
                        pg_sys::INT8OID,
                        pg_sys::NUMERICOID,
                    ]
                    .contains(&pg_sys::exprType(node));
                    let collatable = pg_sys::exprCollation(node) != pg_sys::InvalidOid;
                    (
                        Some(self.to_expr(node, 0, None, None)?),
                        exact,
                        collatable,
                        scale_varies,
                    )
                }
                None => (None, false, false, false),
            };
            let filter = if a.aggfilter.is_null() {
                None
            } else {
                Some(self.to_expr(a.aggfilter.cast(), 0, None, None)?)
            };
            Ok(AggCall {
                builtin_name,
                star: a.aggstar,
                distinct: !a.aggdistinct.is_null(),
                ordered: !a.aggorder.is_null(),
                arg,
                arg_is_exact,
                arg_collatable,
                arg_scale_varies,
                filter,
                result_type: format_type(a.aggtype, -1),
            })
        }
    }

    /// Record every column of every base relation the query references.
    unsafe fn collect_used_columns(&mut self) -> Result<(), Unsupported> {
        // SAFETY: see lower_query.
        unsafe {
            let q = &*self.query;
            let mut nodes: Vec<*mut pg_sys::Node> = vec![q.targetList.cast(), q.havingQual];
            self.join_quals(q.jointree.cast(), &mut nodes);
            let mut vars: Vec<(i32, i16, u32)> = Vec::new();
            for node in nodes.into_iter().filter(|n| !n.is_null()) {
                let flat = self.flatten(node);
                collect_vars(flat, (&mut vars as *mut Vec<(i32, i16, u32)>).cast());
            }
            for (varno, attno, levelsup) in vars {
                if levelsup != 0 {
                    return Err("a reference to an outer query".into());
                }
                if attno <= 0 {
                    return Err("a whole-row or system column reference".into());
                }
                self.used.entry(varno).or_default().insert(attno);
            }
            Ok(())
        }
    }

    unsafe fn join_quals(&self, node: *mut pg_sys::Node, out: &mut Vec<*mut pg_sys::Node>) {
        // SAFETY: node is part of the join tree.
        unsafe {
            if pgrx::is_a(node, pg_sys::NodeTag::T_FromExpr) {
                let f = node.cast::<pg_sys::FromExpr>();
                out.push((*f).quals);
                for item in list_nodes((*f).fromlist) {
                    self.join_quals(item, out);
                }
            } else if pgrx::is_a(node, pg_sys::NodeTag::T_JoinExpr) {
                let j = node.cast::<pg_sys::JoinExpr>();
                out.push((*j).quals);
                self.join_quals((*j).larg, out);
                self.join_quals((*j).rarg, out);
            }
        }
    }

    unsafe fn lower_from(&mut self) -> Result<Rel, Unsupported> {
        // SAFETY: see lower_query.
        unsafe {
            let jointree = (*self.query).jointree;
            let mut rel: Option<Rel> = None;
            for item in list_nodes((*jointree).fromlist) {
                let base = rel.as_ref().map_or(0, Rel::arity);
                let next = self.lower_item(item, base)?;
                rel = Some(match rel {
                    None => next,
                    Some(left) => Rel::Join {
                        left: Box::new(left),
                        right: Box::new(next),
                        on: Expr::truth(),
                    },
                });
            }
            let mut rel = rel.ok_or_else(|| "a query without a FROM clause".to_string())?;
            if !(*jointree).quals.is_null() {
                let quals = self.flatten((*jointree).quals);
                rel = Rel::Filter {
                    input: Box::new(rel),
                    predicate: self.to_expr(quals, 0, None, None)?,
                };
            }
            Ok(rel)
        }
    }

    unsafe fn lower_item(
        &mut self,
        node: *mut pg_sys::Node,
        base: usize,
    ) -> Result<Rel, Unsupported> {
        // SAFETY: node is part of the join tree.
        unsafe {
            if pgrx::is_a(node, pg_sys::NodeTag::T_RangeTblRef) {
                let rtindex = (*node.cast::<pg_sys::RangeTblRef>()).rtindex;
                let rte = pg_sys::list_nth((*self.query).rtable, rtindex - 1)
                    .cast::<pg_sys::RangeTblEntry>();
                if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION {
                    return Err("a subquery or function in FROM".into());
                }
                let attnos: Vec<i16> = self
                    .used
                    .get(&rtindex)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                let mut columns = Vec::new();
                for attno in &attnos {
                    columns.push(
                        CStr::from_ptr(pg_sys::get_attname((*rte).relid, *attno, false))
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
                let source = self.sources.len();
                let relid = (*rte).relid;
                let schema =
                    CStr::from_ptr(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid)))
                        .to_string_lossy()
                        .into_owned();
                let name = CStr::from_ptr(pg_sys::get_rel_name(relid))
                    .to_string_lossy()
                    .into_owned();
                self.sources.push(LoweredSource {
                    relid,
                    schema,
                    name,
                    relkind: (*rte).relkind as u8,
                    attnos,
                    columns,
                });
                self.placed.insert(rtindex, (source, base));
                return Ok(Rel::Scan {
                    source,
                    arity: self.sources[source].attnos.len(),
                });
            }
            if pgrx::is_a(node, pg_sys::NodeTag::T_JoinExpr) {
                let j = &*node.cast::<pg_sys::JoinExpr>();
                let (first, second, outer) = match j.jointype {
                    pg_sys::JoinType::JOIN_INNER => (j.larg, j.rarg, false),
                    pg_sys::JoinType::JOIN_LEFT => (j.larg, j.rarg, true),
                    pg_sys::JoinType::JOIN_RIGHT => (j.rarg, j.larg, true),
                    _ => return Err("FULL OUTER JOIN".into()),
                };
                let left = self.lower_item(first, base)?;
                let right = self.lower_item(second, base + left.arity())?;
                let on = if j.quals.is_null() {
                    Expr::truth()
                } else {
                    let quals = self.flatten(j.quals);
                    self.to_expr(quals, base, None, None)?
                };
                let (left, right) = (Box::new(left), Box::new(right));
                return Ok(if outer {
                    Rel::LeftJoin { left, right, on }
                } else {
                    Rel::Join { left, right, on }
                });
            }
            Err("an unsupported FROM item".into())
        }
    }

    /// Only tables (plain or partitioned, including stream tables) can be captured; the
    /// columns read must be hashable so that changes can be consolidated.
    unsafe fn check_sources(&self) -> Result<(), Unsupported> {
        for source in &self.sources {
            let kind = match source.relkind {
                b'r' | b'p' => None,
                b'v' => Some("a view"),
                b'm' => Some("a materialized view"),
                b'f' => Some("a foreign table"),
                _ => Some("a relation that cannot carry triggers"),
            };
            if let Some(kind) = kind {
                return Err(format!(
                    "reading {kind} (change capture needs triggers on a table)"
                ));
            }
            for attno in &source.attnos {
                // SAFETY: the relation and column exist (the query was just analyzed).
                let type_oid = unsafe { pg_sys::get_atttype(source.relid, *attno) };
                // SAFETY: as above.
                if !unsafe { hashable(type_oid) } {
                    // SAFETY: as above.
                    return Err(format!(
                        "reading a column of type {}, which has no hash function",
                        unsafe { format_type(type_oid, -1) }
                    ));
                }
            }
        }
        Ok(())
    }

    /// Deparse `node` into an `Expr` whose arguments are FROM-row columns (relative to `base`)
    /// or, with `keys`, group keys and aggregates.
    unsafe fn to_expr(
        &self,
        node: *mut pg_sys::Node,
        base: usize,
        keys: Option<&[*mut pg_sys::Node]>,
        aggs: Option<&mut Vec<*mut pg_sys::Node>>,
    ) -> Result<Expr, Unsupported> {
        let mut ctx = MutateContext {
            lowerer: self,
            base,
            keys,
            aggs,
            params: Vec::new(),
            error: None,
        };
        // SAFETY: the mutator copies the tree; our callback only reads nodes and builds Params.
        let mutated = unsafe { replace_references(node, (&mut ctx as *mut MutateContext).cast()) };
        if let Some(error) = ctx.error {
            return Err(error);
        }
        // SAFETY: mutated is a valid expression tree.
        unsafe {
            if pgrx::is_a(mutated, pg_sys::NodeTag::T_Param) && ctx.params.len() == 1 {
                return Ok(ctx.params.remove(0));
            }
            let text = with_search_path(SAFE_SEARCH_PATH, || {
                CStr::from_ptr(pg_sys::deparse_expression(
                    mutated,
                    std::ptr::null_mut(),
                    false,
                    true,
                ))
                .to_string_lossy()
                .into_owned()
            });
            Ok(Expr::Sql {
                template: Template::parse(&text),
                args: ctx.params,
            })
        }
    }
}
