//! The dependency graph between stream tables: which stream table reads which. Used to refuse
//! cycles and to order refreshes so that upstreams are refreshed before their dependants.
//! Generic over the node id so tests can use small integers and the extension relation OIDs.

use std::collections::{BTreeMap, BTreeSet};

/// A directed graph from upstream to downstream, with deterministic (ordered) iteration.
#[derive(Debug, Clone, Default)]
pub struct Dag<N: Ord + Copy> {
    downstream: BTreeMap<N, BTreeSet<N>>,
    upstream: BTreeMap<N, BTreeSet<N>>,
}

impl<N: Ord + Copy> Dag<N> {
    pub fn new() -> Self {
        Dag {
            downstream: BTreeMap::new(),
            upstream: BTreeMap::new(),
        }
    }

    /// Build from `(upstream, downstream)` edges.
    pub fn from_edges(edges: impl IntoIterator<Item = (N, N)>) -> Self {
        let mut dag = Dag::new();
        for (up, down) in edges {
            dag.add_edge(up, down);
        }
        dag
    }

    pub fn add_node(&mut self, node: N) {
        self.downstream.entry(node).or_default();
        self.upstream.entry(node).or_default();
    }

    pub fn add_edge(&mut self, up: N, down: N) {
        self.add_node(up);
        self.add_node(down);
        self.downstream.entry(up).or_default().insert(down);
        self.upstream.entry(down).or_default().insert(up);
    }

    pub fn upstreams(&self, node: N) -> impl Iterator<Item = N> + '_ {
        self.upstream.get(&node).into_iter().flatten().copied()
    }

    pub fn downstreams(&self, node: N) -> impl Iterator<Item = N> + '_ {
        self.downstream.get(&node).into_iter().flatten().copied()
    }

    /// If giving `node` the upstreams `new_upstreams` would close a cycle, the cycle as a path
    /// `node -> ... -> node` (following upstream -> downstream edges).
    pub fn cycle_if_reads(&self, node: N, new_upstreams: &[N]) -> Option<Vec<N>> {
        // A cycle exists iff `node` reaches one of its new upstreams going downstream.
        for &up in new_upstreams {
            if up == node {
                return Some(vec![node, node]);
            }
            if let Some(mut path) = self.path(node, up) {
                path.push(node);
                return Some(path);
            }
        }
        None
    }

    /// A path from `from` to `to` following downstream edges, if any.
    fn path(&self, from: N, to: N) -> Option<Vec<N>> {
        let mut parent: BTreeMap<N, N> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(n) = queue.pop_front() {
            if n == to {
                let mut path = vec![to];
                let mut cur = to;
                while let Some(&p) = parent.get(&cur) {
                    path.push(p);
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            for d in self.downstreams(n) {
                if seen.insert(d) {
                    parent.insert(d, n);
                    queue.push_back(d);
                }
            }
        }
        None
    }

    /// All nodes with every upstream before its downstreams (Kahn's algorithm, smallest id
    /// first among ready nodes). `Err` holds the nodes left on a cycle.
    pub fn topological_order(&self) -> Result<Vec<N>, Vec<N>> {
        let mut remaining: BTreeMap<N, usize> = self
            .upstream
            .iter()
            .map(|(n, ups)| (*n, ups.len()))
            .collect();
        let mut ready: BTreeSet<N> = remaining
            .iter()
            .filter(|(_, c)| **c == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut order = Vec::with_capacity(remaining.len());
        while let Some(n) = ready.pop_first() {
            remaining.remove(&n);
            order.push(n);
            for d in self.downstreams(n) {
                if let Some(count) = remaining.get_mut(&d) {
                    *count -= 1;
                    if *count == 0 {
                        ready.insert(d);
                    }
                }
            }
        }
        if remaining.is_empty() {
            Ok(order)
        } else {
            Err(remaining.into_keys().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chain_orders_upstream_first() {
        let dag = Dag::from_edges([(3, 2), (2, 1)]);
        assert_eq!(dag.topological_order(), Ok(vec![3, 2, 1]));
    }

    #[test]
    fn detects_cycles_before_they_are_made() {
        let dag = Dag::from_edges([(1, 2), (2, 3)]);
        assert_eq!(dag.cycle_if_reads(1, &[3]), Some(vec![1, 2, 3, 1]));
        assert_eq!(dag.cycle_if_reads(1, &[1]), Some(vec![1, 1]));
        assert_eq!(dag.cycle_if_reads(3, &[1]), None);
        assert_eq!(dag.cycle_if_reads(4, &[1, 2]), None);
    }

    #[test]
    fn reports_nodes_on_a_cycle() {
        let dag = Dag::from_edges([(1, 2), (2, 3), (3, 2), (0, 1)]);
        assert_eq!(dag.topological_order(), Err(vec![2, 3]));
    }

    proptest! {
        /// Edges only from a smaller to a larger id can never form a cycle, and the order
        /// must put each edge's upstream first.
        #[test]
        fn acyclic_graphs_get_a_valid_order(edges in proptest::collection::vec((0u8..20, 0u8..20), 0..60)) {
            let edges: Vec<(u8, u8)> = edges.into_iter().filter(|(a, b)| a < b).collect();
            let dag = Dag::from_edges(edges.clone());
            let order = dag.topological_order().expect("acyclic");
            let pos = |n: u8| order.iter().position(|x| *x == n).expect("present");
            for (a, b) in edges {
                prop_assert!(pos(a) < pos(b));
                prop_assert!(dag.cycle_if_reads(a, &[b]).is_some());
            }
        }
    }
}
