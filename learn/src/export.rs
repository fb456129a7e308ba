//! Trained models in the formats people deploy with.
//!
//! - `torch`: a safetensors file holding the state_dict of the equivalent
//!   PyTorch `nn.Sequential` (names `0.weight`, `1.running_mean`, ...,
//!   batch-norm buffers and `num_batches_tracked` included), so that
//!   `model.load_state_dict(load_file(path))` works with no renaming. The
//!   Python that builds that `nn.Sequential` is in the file's metadata
//!   (`torch_module`), beside this tool's own model spec.
//! - `onnx`: an ONNX model (IR version 8, opset 13), input `input`
//!   (batch × 1 × 28 × 28, normalized as in training), output `logits`.
//!   Dropout is left out (inference), batch norm uses its running
//!   statistics.
//!
//! Both are written from the model's resolved layers ([`Model::steps`]);
//! a linear layer met before any flatten gets the flatten PyTorch needs.

use crate::nn::checkpoint::CheckpointError;
use crate::nn::kernels::BN_EPS;
use crate::nn::model::{Model, Step};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;

/// One module of the equivalent `nn.Sequential`.
enum Module {
    Conv { step: Step },
    Pool { k: usize },
    Bn { step: Step },
    Relu,
    Dropout(f32),
    Flatten,
    Linear { step: Step, inputs: usize },
}

fn modules(model: &Model) -> Vec<Module> {
    let mut out = Vec::new();
    let (c, h, w) = model.input;
    let mut features = c * h * w;
    let mut flat = false;
    for s in model.steps() {
        match s {
            Step::Conv { g, .. } => {
                features = g.o * g.oh() * g.ow();
                out.push(Module::Conv { step: s });
            }
            Step::Pool(p) => {
                features = p.c * (p.h / p.k) * (p.w / p.k);
                out.push(Module::Pool { k: p.k });
            }
            Step::Bn { .. } => out.push(Module::Bn { step: s }),
            Step::Relu => out.push(Module::Relu),
            Step::Dropout(p) => out.push(Module::Dropout(p)),
            Step::Flatten { .. } => {
                flat = true;
                out.push(Module::Flatten);
            }
            Step::Linear { o, .. } => {
                if !flat {
                    flat = true;
                    out.push(Module::Flatten);
                }
                out.push(Module::Linear {
                    step: s,
                    inputs: features,
                });
                features = o;
            }
        }
    }
    out
}

/// The Python that builds the equivalent module (`model = nn.Sequential(...)`).
pub fn torch_module(model: &Model) -> String {
    let mut s = String::from("import torch.nn as nn\n\nmodel = nn.Sequential(\n");
    for (i, m) in modules(model).iter().enumerate() {
        let line = match *m {
            Module::Conv {
                step: Step::Conv { g, .. },
            } => format!(
                "nn.Conv2d({}, {}, kernel_size={}, stride={}, padding={})",
                g.c, g.o, g.k, g.stride, g.pad
            ),
            Module::Pool { k } => format!("nn.MaxPool2d({k})"),
            Module::Bn {
                step: Step::Bn { c, .. },
            } => format!("nn.BatchNorm2d({c}, eps={BN_EPS:e})"),
            Module::Relu => "nn.ReLU()".into(),
            Module::Dropout(p) => format!("nn.Dropout({p})"),
            Module::Flatten => "nn.Flatten()".into(),
            Module::Linear {
                step: Step::Linear { o, .. },
                inputs,
            } => format!("nn.Linear({inputs}, {o})"),
            _ => unreachable!("modules are built from their own steps"),
        };
        s.push_str(&format!("    {line},  # {i}\n"));
    }
    s.push_str(")\n");
    s
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The state_dict of the equivalent `nn.Sequential`, as safetensors bytes.
pub fn torch(model: &Model, spec_json: &str) -> Result<Vec<u8>, CheckpointError> {
    let write = |e: safetensors::SafeTensorError| CheckpointError::Write(e.to_string());
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let p = |i: usize| &model.params[i];
    let b = |i: usize| &model.buffers[i];
    for (j, m) in modules(model).iter().enumerate() {
        let mut put = |name: &str, t: &crate::nn::model::Tensor1| {
            tensors.push((
                format!("{j}.{name}"),
                Dtype::F32,
                t.shape.clone(),
                f32_bytes(&t.data),
            ))
        };
        match *m {
            Module::Conv {
                step: Step::Conv { w, b: bias, .. },
            }
            | Module::Linear {
                step: Step::Linear { w, b: bias, .. },
                ..
            } => {
                put("weight", p(w));
                put("bias", p(bias));
            }
            Module::Bn {
                step: Step::Bn {
                    gamma, beta, buf, ..
                },
            } => {
                put("weight", p(gamma));
                put("bias", p(beta));
                put("running_mean", b(buf));
                put("running_var", b(buf + 1));
                // A buffer PyTorch keeps (used only when momentum is None).
                tensors.push((
                    format!("{j}.num_batches_tracked"),
                    Dtype::I64,
                    vec![],
                    0i64.to_le_bytes().to_vec(),
                ));
            }
            _ => {}
        }
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, bytes)| TensorView::new(*d, s.clone(), bytes).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(write)?;
    let meta: std::collections::HashMap<String, String> = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            crate::nn::checkpoint::META_KEY.to_string(),
            spec_json.to_string(),
        ),
        ("torch_module".to_string(), torch_module(model)),
    ])
    .into_iter()
    .collect();
    safetensors::serialize(views, &Some(meta)).map_err(write)
}

/// Protocol-buffer encoding, just what ONNX's messages need.
mod pb {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wire));
    }
    pub fn int(out: &mut Vec<u8>, field: u32, v: i64) {
        key(out, field, 0);
        varint(out, v as u64);
    }
    pub fn float(out: &mut Vec<u8>, field: u32, v: f32) {
        key(out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
        key(out, field, 2);
        varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
    pub fn string(out: &mut Vec<u8>, field: u32, v: &str) {
        bytes(out, field, v.as_bytes());
    }
}

/// ONNX's enums and versions used here.
const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 13;
const FLOAT: i64 = 1;
const ATTR_FLOAT: i64 = 1;
const ATTR_INT: i64 = 2;
const ATTR_INTS: i64 = 7;

enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

fn node(op: &str, name: &str, inputs: &[String], output: &str, attrs: &[(&str, Attr)]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        pb::string(&mut n, 1, i);
    }
    pb::string(&mut n, 2, output);
    pb::string(&mut n, 3, name);
    pb::string(&mut n, 4, op);
    for (an, a) in attrs {
        let mut m = Vec::new();
        pb::string(&mut m, 1, an);
        match a {
            Attr::Float(f) => {
                pb::float(&mut m, 2, *f);
                pb::int(&mut m, 20, ATTR_FLOAT);
            }
            Attr::Int(i) => {
                pb::int(&mut m, 3, *i);
                pb::int(&mut m, 20, ATTR_INT);
            }
            Attr::Ints(v) => {
                for i in v {
                    pb::int(&mut m, 8, *i);
                }
                pb::int(&mut m, 20, ATTR_INTS);
            }
        }
        pb::bytes(&mut n, 5, &m);
    }
    n
}

fn initializer(name: &str, dims: &[usize], data: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        pb::int(&mut t, 1, d as i64);
    }
    pb::int(&mut t, 2, FLOAT);
    pb::string(&mut t, 8, name);
    pb::bytes(&mut t, 9, &f32_bytes(data));
    t
}

/// A float tensor's name and shape; `None` dimensions are named `batch`.
fn value_info(name: &str, dims: &[Option<usize>]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Some(v) => pb::int(&mut dim, 1, *v as i64),
            None => pb::string(&mut dim, 2, "batch"),
        }
        pb::bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    pb::int(&mut tensor, 1, FLOAT);
    pb::bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    pb::bytes(&mut ty, 1, &tensor);
    let mut v = Vec::new();
    pb::string(&mut v, 1, name);
    pb::bytes(&mut v, 2, &ty);
    v
}

/// Module `j`'s node, from `prev` to `out`, its parameters added to
/// `inits`.
fn module_node(
    model: &Model,
    (j, m): (usize, &Module),
    prev: &str,
    out: &str,
    inits: &mut Vec<Vec<u8>>,
) -> Vec<u8> {
    let prev = prev.to_string();
    let param = |inits: &mut Vec<Vec<u8>>, name: String, t: &crate::nn::model::Tensor1| {
        inits.push(initializer(&name, &t.shape, &t.data));
        name
    };
    let name = format!("n{j}");
    match *m {
        Module::Conv {
            step: Step::Conv { g, w, b },
        } => {
            let w = param(inits, format!("{j}.weight"), &model.params[w]);
            let b = param(inits, format!("{j}.bias"), &model.params[b]);
            let (k, s, p) = (g.k as i64, g.stride as i64, g.pad as i64);
            node(
                "Conv",
                &name,
                &[prev.clone(), w, b],
                out,
                &[
                    ("kernel_shape", Attr::Ints(vec![k, k])),
                    ("strides", Attr::Ints(vec![s, s])),
                    ("pads", Attr::Ints(vec![p, p, p, p])),
                ],
            )
        }
        Module::Pool { k } => {
            let k = k as i64;
            node(
                "MaxPool",
                &name,
                std::slice::from_ref(&prev),
                out,
                &[
                    ("kernel_shape", Attr::Ints(vec![k, k])),
                    ("strides", Attr::Ints(vec![k, k])),
                ],
            )
        }
        Module::Bn {
            step: Step::Bn {
                gamma, beta, buf, ..
            },
        } => {
            let inputs = [
                prev.clone(),
                param(inits, format!("{j}.weight"), &model.params[gamma]),
                param(inits, format!("{j}.bias"), &model.params[beta]),
                param(inits, format!("{j}.running_mean"), &model.buffers[buf]),
                param(inits, format!("{j}.running_var"), &model.buffers[buf + 1]),
            ];
            node(
                "BatchNormalization",
                &name,
                &inputs,
                out,
                &[("epsilon", Attr::Float(BN_EPS))],
            )
        }
        Module::Relu => node("Relu", &name, std::slice::from_ref(&prev), out, &[]),
        // Inference: dropout is the identity.
        Module::Dropout(_) => node("Identity", &name, std::slice::from_ref(&prev), out, &[]),
        Module::Flatten => node(
            "Flatten",
            &name,
            std::slice::from_ref(&prev),
            out,
            &[("axis", Attr::Int(1))],
        ),
        Module::Linear {
            step: Step::Linear { w, b, .. },
            ..
        } => {
            let inputs = [
                prev.clone(),
                param(inits, format!("{j}.weight"), &model.params[w]),
                param(inits, format!("{j}.bias"), &model.params[b]),
            ];
            node("Gemm", &name, &inputs, out, &[("transB", Attr::Int(1))])
        }
        _ => unreachable!("modules are built from their own steps"),
    }
}

/// The model as ONNX bytes; `doc` goes into the model's doc string.
pub fn onnx(model: &Model, doc: &str) -> Vec<u8> {
    let mut graph = Vec::new();
    let mut inits: Vec<Vec<u8>> = Vec::new();
    let mut prev = "input".to_string();
    let mods = modules(model);
    let last = mods.len().saturating_sub(1);
    for (j, m) in mods.iter().enumerate() {
        let out = if j == last {
            "logits".to_string()
        } else {
            format!("t{j}")
        };
        let n = module_node(model, (j, m), &prev, &out, &mut inits);
        pb::bytes(&mut graph, 1, &n);
        prev = out;
    }
    pb::string(&mut graph, 2, "fmnist-pipe");
    for i in &inits {
        pb::bytes(&mut graph, 5, i);
    }
    let (c, h, w) = model.input;
    pb::bytes(
        &mut graph,
        11,
        &value_info("input", &[None, Some(c), Some(h), Some(w)]),
    );
    pb::bytes(
        &mut graph,
        12,
        &value_info("logits", &[None, Some(model.classes)]),
    );
    let mut m = Vec::new();
    pb::int(&mut m, 1, IR_VERSION);
    pb::string(&mut m, 2, "fmnist-pipe");
    pb::string(&mut m, 3, env!("CARGO_PKG_VERSION"));
    pb::string(&mut m, 6, doc);
    pb::bytes(&mut m, 7, &graph);
    let mut opset = Vec::new();
    pb::string(&mut opset, 1, "");
    pb::int(&mut opset, 2, OPSET);
    pb::bytes(&mut m, 8, &opset);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::model::{Knobs, ModelSpec};

    fn main_cnn() -> Model {
        let k = Knobs {
            dropout: 0.25,
            batchnorm: true,
            channels: None,
            hidden: None,
        };
        Model::new(ModelSpec::MainCnn.layers(&k).unwrap(), (1, 28, 28), 10, 1).unwrap()
    }

    #[test]
    fn protobuf_varints() {
        let mut v = Vec::new();
        pb::varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut v = Vec::new();
        pb::int(&mut v, 1, -1);
        assert_eq!(v.len(), 11, "negative int64: ten bytes of varint");
    }

    #[test]
    fn the_torch_state_dict_has_pytorchs_names_and_shapes() {
        let m = main_cnn();
        let bytes = torch(&m, "{}").unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert!(names.contains(&&"0.weight".to_string()));
        assert_eq!(st.tensor("0.weight").unwrap().shape(), [32, 1, 3, 3]);
        assert_eq!(st.tensor("1.running_var").unwrap().shape(), [32]);
        assert_eq!(
            st.tensor("1.num_batches_tracked").unwrap().dtype(),
            Dtype::I64
        );
        let params: usize = names
            .iter()
            .filter(|n| !n.contains("running") && !n.contains("num_batches"))
            .map(|n| st.tensor(n).unwrap().shape().iter().product::<usize>())
            .sum();
        assert_eq!(params, m.parameter_count());
        let code = torch_module(&m);
        assert!(
            code.contains("nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1),  # 0"),
            "{code}"
        );
        assert!(
            code.contains("nn.BatchNorm2d(32, eps=1e-5),  # 1"),
            "{code}"
        );
        assert!(code.contains("nn.Flatten(),"), "{code}");
    }

    #[test]
    fn a_linear_first_model_gets_its_flatten() {
        let m = Model::new(
            ModelSpec::Logistic
                .layers(&Knobs {
                    dropout: 0.0,
                    batchnorm: false,
                    channels: None,
                    hidden: None,
                })
                .unwrap(),
            (1, 28, 28),
            10,
            1,
        )
        .unwrap();
        let code = torch_module(&m);
        assert!(
            code.contains("nn.Flatten(),  # 0\n    nn.Linear(784, 10),  # 1"),
            "{code}"
        );
        let st_bytes = torch(&m, "{}").unwrap();
        let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
        assert_eq!(st.tensor("1.weight").unwrap().shape(), [10, 784]);
    }
}
