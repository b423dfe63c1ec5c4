//! An in-memory Z-set evaluator for operator trees: the reference semantics the delta rules
//! are checked against, and the place where SQL's three-valued logic is written down once.
//! Only the typed `Expr` variants are evaluated; `Expr::Sql` (server-side SQL) is not.

mod eval;

pub use eval::{contributions, eval, eval_expr, Contributions, Database};

use crate::ir::Value;
use std::collections::BTreeMap;

pub type Row = Vec<Value>;

/// Rows with non-zero integer weights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZSet {
    rows: BTreeMap<Row, i64>,
}

impl ZSet {
    pub fn new() -> Self {
        ZSet::default()
    }

    pub fn add(&mut self, row: Row, weight: i64) {
        if weight == 0 {
            return;
        }
        let entry = self.rows.entry(row).or_insert(0);
        *entry += weight;
        if *entry == 0 {
            self.rows.retain(|_, w| *w != 0);
        }
    }

    pub fn add_all(&mut self, other: &ZSet, sign: i64) {
        for (row, w) in other.iter() {
            self.add(row.clone(), w * sign);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Row, i64)> {
        self.rows.iter().map(|(r, w)| (r, *w))
    }

    pub fn weight(&self, row: &Row) -> i64 {
        self.rows.get(row).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// `self - other`.
    pub fn minus(&self, other: &ZSet) -> ZSet {
        let mut out = self.clone();
        out.add_all(other, -1);
        out
    }
}

impl FromIterator<(Row, i64)> for ZSet {
    fn from_iter<I: IntoIterator<Item = (Row, i64)>>(iter: I) -> Self {
        let mut z = ZSet::new();
        for (row, w) in iter {
            z.add(row, w);
        }
        z
    }
}

#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod strategy_props;
