//! The stage DAG: cycle detection with the cycle named, topological order,
//! the closure of what a target needs, and the `dag` renderings.

use crate::error::{Diagnostic, Result};
use crate::spec::Pipeline;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub struct Dag {
    /// Edges point from a stage to the stages that need it.
    graph: DiGraph<usize, ()>,
    /// Stage indices in dependency order.
    order: Vec<usize>,
}

impl Dag {
    pub fn build(p: &Pipeline) -> Result<Dag> {
        let mut graph = DiGraph::with_capacity(p.stages.len(), p.stages.len());
        for i in 0..p.stages.len() {
            graph.add_node(i);
        }
        for (i, s) in p.stages.iter().enumerate() {
            for &j in &s.needs {
                graph.add_edge(NodeIndex::new(j), NodeIndex::new(i), ());
            }
        }
        // Kahn's algorithm, smallest index first: among stages free to go,
        // the one declared first comes first.
        let mut indegree: Vec<usize> = p.stages.iter().map(|s| s.needs.len()).collect();
        let mut heap: BinaryHeap<Reverse<usize>> = (0..p.stages.len())
            .filter(|&i| indegree[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(p.stages.len());
        while let Some(Reverse(i)) = heap.pop() {
            order.push(i);
            for c in graph.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
                indegree[c.index()] -= 1;
                if indegree[c.index()] == 0 {
                    heap.push(Reverse(c.index()));
                }
            }
        }
        if order.len() < p.stages.len() {
            return Err(cycle_error(p, &graph).into());
        }
        Ok(Dag { graph, order })
    }

    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The stages that need stage `i` directly.
    pub fn dependents(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
            .map(|n| n.index())
    }

    /// `targets` and everything they need, as a mask over stages.
    pub fn closure(&self, p: &Pipeline, targets: &[usize]) -> Vec<bool> {
        let mut keep = vec![false; p.stages.len()];
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut keep[i], true) {
                stack.extend(p.stages[i].needs.iter().copied());
            }
        }
        keep
    }
}

/// Finds one cycle and names it: `a -> b -> a`.
fn cycle_error(p: &Pipeline, graph: &DiGraph<usize, ()>) -> Diagnostic {
    let names = |i: usize| p.stages[i].name.as_str();
    let mut cycle: Vec<usize> = Vec::new();
    for scc in tarjan_scc(graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        // Walk inside the component from its first stage until we come back.
        let inside: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        let start = *scc.iter().min_by_key(|n| n.index()).expect("non-empty");
        let mut path = vec![start];
        let mut seen = std::collections::HashSet::new();
        let mut cur = start;
        loop {
            seen.insert(cur);
            let mut next = graph
                .neighbors_directed(cur, Direction::Outgoing)
                .filter(|n| inside.contains(n))
                .collect::<Vec<_>>();
            next.sort_by_key(|n| n.index());
            if next.contains(&start) {
                path.push(start);
                break;
            }
            match next.into_iter().find(|n| !seen.contains(n)) {
                Some(n) => {
                    path.push(n);
                    cur = n;
                }
                None => {
                    path.push(start);
                    break;
                }
            }
        }
        cycle = path.into_iter().map(|n| n.index()).collect();
        break;
    }
    let text = cycle
        .iter()
        .map(|&i| names(i))
        .collect::<Vec<_>>()
        .join(" -> ");
    let first = cycle
        .first()
        .map(|&i| p.stages[i].base.clone())
        .unwrap_or_default();
    let mut d = Diagnostic::new(&p.settings.file, format!("the stages form a cycle: {text}"))
        .help("a stage cannot need, directly or through others, a stage that needs it; remove one of these dependencies (`needs`, `foreach`, or a dep on another stage's output)");
    if let Some((line, col)) = locate_stage(&p.text, &first) {
        d = d.at(&p.text, line, col);
    }
    d
}

fn locate_stage(text: &str, base: &str) -> Option<(usize, usize)> {
    crate::spec::locate_key(text, &["stages", base])
}

/// `dag`: an indented tree from the stages that need nothing. A stage
/// reached a second time is printed once more with `(see above)`.
pub fn render_tree(p: &Pipeline, dag: &Dag) -> String {
    let mut out = String::new();
    let mut printed = vec![false; p.stages.len()];
    let roots: Vec<usize> = dag
        .order
        .iter()
        .copied()
        .filter(|&i| p.stages[i].needs.is_empty())
        .collect();
    fn walk(
        p: &Pipeline,
        dag: &Dag,
        i: usize,
        depth: usize,
        printed: &mut [bool],
        out: &mut String,
    ) {
        let s = &p.stages[i];
        out.push_str(&"  ".repeat(depth));
        out.push_str(&s.name);
        match s.kind.describe(&s.params) {
            Some(d) => out.push_str(&format!(" ({}, {d})", s.kind.name())),
            None => out.push_str(&format!(" ({})", s.kind.name())),
        }
        // A search's trial: what the sampler drew.
        if let Some(v) = s
            .desc
            .as_ref()
            .filter(|_| p.searches.iter().any(|x| x.trials.contains(&i)))
        {
            out.push_str(&format!(" [{v}]"));
        }
        if printed[i] {
            out.push_str(" (see above)\n");
            return;
        }
        out.push('\n');
        printed[i] = true;
        let mut children: Vec<usize> = dag.dependents(i).collect();
        // Children in dependency order, so a stage comes after its siblings
        // that it needs.
        children.sort_by_key(|&c| dag.order.iter().position(|&o| o == c));
        children.dedup();
        for c in children {
            walk(p, dag, c, depth + 1, printed, out);
        }
    }
    for r in roots {
        walk(p, dag, r, 0, &mut printed, &mut out);
    }
    out
}

/// `dag --dot`: Graphviz.
pub fn render_dot(p: &Pipeline) -> String {
    let mut out = String::from("digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n");
    for s in &p.stages {
        out.push_str(&format!(
            "  \"{}\" [label=\"{}\\n{}\"];\n",
            s.name,
            s.name,
            s.kind.name()
        ));
    }
    for s in &p.stages {
        for &j in &s.needs {
            out.push_str(&format!("  \"{}\" -> \"{}\";\n", p.stages[j].name, s.name));
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::path::Path;

    fn pipeline(text: &str) -> Pipeline {
        let raw = serde_yaml::from_str(text).unwrap();
        crate::spec::resolve(raw, text.into(), Path::new("p.yaml")).unwrap()
    }

    #[test]
    fn cycle_is_named() {
        let p = pipeline("stages:\n  a:\n    kind: cmd\n    cmd: x\n    needs: [b]\n  b:\n    kind: cmd\n    cmd: y\n    needs: [a]\n  c:\n    kind: cmd\n    cmd: z\n");
        match Dag::build(&p) {
            Err(Error::Pipeline(d)) => {
                assert!(d.message.contains("a -> b -> a"), "{}", d.message);
                assert_eq!(d.line, Some(2));
            }
            _ => panic!("expected a cycle"),
        }
    }

    #[test]
    fn self_cycle_is_named() {
        let p = pipeline("stages:\n  a:\n    kind: cmd\n    cmd: x\n    needs: [a]\n");
        let Err(Error::Pipeline(d)) = Dag::build(&p) else {
            panic!()
        };
        assert!(d.message.contains("a -> a"), "{}", d.message);
    }

    #[test]
    fn order_closure_and_tree() {
        let p = pipeline("stages:\n  c:\n    kind: cmd\n    cmd: x\n    needs: [a, b]\n  b:\n    kind: cmd\n    cmd: y\n    needs: [a]\n  a:\n    kind: cmd\n    cmd: z\n  lone:\n    kind: cmd\n    cmd: w\n");
        let dag = Dag::build(&p).unwrap();
        let pos = |n: &str| {
            dag.order()
                .iter()
                .position(|&i| p.stages[i].name == n)
                .unwrap()
        };
        assert!(pos("a") < pos("b") && pos("b") < pos("c"));
        let keep = dag.closure(&p, &[1]);
        assert_eq!(keep, vec![false, true, true, false]);
        let tree = render_tree(&p, &dag);
        assert!(
            tree.contains("a (cmd)\n  b (cmd)\n    c (cmd)\n  c (cmd) (see above)\n"),
            "{tree}"
        );
        assert!(render_dot(&p).contains("\"a\" -> \"c\""));
    }
}
