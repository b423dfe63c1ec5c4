//! Diamond consistency: which stream tables created with `diamond_consistency => 'atomic'` the
//! scheduler refreshes together, in one transaction, so that readers never see them disagree.
//!
//! Rule: two atomic stream tables belong to the same group when they read a common relation
//! (a table or another stream table), or when one reads the other; groups are the connected
//! components of that relation. A group is refreshed whole, upstreams first, whenever one of
//! its members is due. Stream tables without `'atomic'` never join a group.

use crate::dag::Dag;
use std::collections::BTreeMap;

/// One atomic stream table: its id, the OID of its table, and the OIDs it reads.
#[derive(Debug, Clone)]
pub struct AtomicMember {
    pub id: i64,
    pub relation: u32,
    pub reads: Vec<u32>,
}

/// The groups of two or more members, each in dependency order (upstreams first).
pub fn atomic_groups(members: &[AtomicMember], dag: &Dag<i64>) -> Vec<Vec<i64>> {
    let mut parent: Vec<usize> = (0..members.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for a in 0..members.len() {
        for b in (a + 1)..members.len() {
            let (ma, mb) = (&members[a], &members[b]);
            let linked = ma.reads.iter().any(|r| mb.reads.contains(r))
                || ma.reads.contains(&mb.relation)
                || mb.reads.contains(&ma.relation);
            if linked {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[ra] = rb;
            }
        }
    }
    let order: BTreeMap<i64, usize> = dag
        .topological_order()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(pos, id)| (id, pos))
        .collect();
    let mut groups: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for (i, member) in members.iter().enumerate() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(member.id);
    }
    let mut groups: Vec<Vec<i64>> = groups.into_values().filter(|g| g.len() > 1).collect();
    for group in &mut groups {
        group.sort_by_key(|id| (order.get(id).copied().unwrap_or(usize::MAX), *id));
    }
    groups.sort();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: i64, relation: u32, reads: &[u32]) -> AtomicMember {
        AtomicMember {
            id,
            relation,
            reads: reads.to_vec(),
        }
    }

    #[test]
    fn fan_out_from_one_source_forms_one_group() {
        // two stream tables reading table 100, a third reading table 200
        let members = [
            member(1, 11, &[100]),
            member(2, 12, &[100, 300]),
            member(3, 13, &[200]),
        ];
        assert_eq!(atomic_groups(&members, &Dag::new()), vec![vec![1, 2]]);
    }

    #[test]
    fn a_diamond_is_one_group_in_dependency_order() {
        // 1 reads table 100; 2 and 3 read 1; 4 reads 2 and 3
        let dag = Dag::from_edges([(1, 2), (1, 3), (2, 4), (3, 4)]);
        let members = [
            member(4, 14, &[12, 13]),
            member(3, 13, &[11]),
            member(2, 12, &[11]),
            member(1, 11, &[100]),
        ];
        assert_eq!(atomic_groups(&members, &dag), vec![vec![1, 2, 3, 4]]);
    }

    #[test]
    fn unrelated_members_stay_alone() {
        let members = [member(1, 11, &[100]), member(2, 12, &[200])];
        assert!(atomic_groups(&members, &Dag::new()).is_empty());
    }
}
