//! `dag`: the graph as a tree or in Graphviz.

use crate::error::{exit, Result};
use crate::spec::graph::{self, Dag};
use crate::spec::Pipeline;
use crate::ui::reporter::Reporter;

pub fn run(pipeline: &Pipeline, dag: &Dag, reporter: &mut Reporter, dot: &bool) -> Result<i32> {
    reporter.text(&if *dot {
        graph::render_dot(pipeline)
    } else {
        graph::render_tree(pipeline, dag)
    });
    Ok(exit::OK)
}
