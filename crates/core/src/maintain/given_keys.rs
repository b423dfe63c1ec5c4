//! Group keys handed to a statement as parameters, the convention of the statements that
//! recompute chosen groups: `$(i+1)` is the `text[]` of key i's values (in text form) and
//! `$(n+i+1)` whether a NULL is among them. Here: the keys as rows, and the condition that
//! restricts a query to them (per column, so that PostgreSQL can push it down to an index).

use super::row_id;

/// Parameter `i` as an array of key type `ty`.
fn values(i: usize, ty: &str) -> String {
    format!("${}::text[]::{ty}[]", i + 1)
}

/// `SELECT k0, .., <row id> AS rid FROM unnest(..)`: one row per given key.
pub(crate) fn given_keys(types: &[String]) -> String {
    let u_keys: Vec<String> = (0..types.len()).map(|i| format!("u.k{i}")).collect();
    format!(
        "SELECT {}, {} AS rid FROM unnest({}) AS u({})",
        u_keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} AS k{i}"))
            .collect::<Vec<_>>()
            .join(", "),
        row_id(&u_keys),
        types
            .iter()
            .enumerate()
            .map(|(i, ty)| values(i, ty))
            .collect::<Vec<_>>()
            .join(", "),
        (0..types.len())
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Conditions that key expression `cols[i]` is among key i's given values (a superset of the
/// given keys when there are several columns; joining `given_keys` makes it exact).
pub(crate) fn among_given_keys(cols: &[String], types: &[String]) -> Vec<String> {
    let n = types.len();
    cols.iter()
        .zip(types)
        .enumerate()
        .map(|(i, (k, ty))| {
            format!(
                "({k} = ANY({}) OR ({k} IS NULL AND ${}))",
                values(i, ty),
                n + i + 1
            )
        })
        .collect()
}
