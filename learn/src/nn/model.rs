//! Model specs (the zoo, or layers declared in YAML), shape inference, the
//! parameter registry, and the forward pass on dfdx tensors.

use super::kernels::{Conv, Family};
use super::ops::{self, Dev, Param, T2, T4};
pub use super::vector::Tensor1;
use dfdx::prelude::*;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One layer, as written in YAML: `{conv: {out: 32, kernel: 3, padding: 1}}`,
/// `batchnorm`, `relu`, `{maxpool: 2}`, `flatten`, `{linear: 256}`,
/// `{dropout: 0.25}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum LayerSpec {
    Conv {
        out: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
    },
    Maxpool(usize),
    Batchnorm,
    Relu,
    Dropout(f32),
    Flatten,
    Linear(usize),
}

fn one() -> usize {
    1
}

/// `main-cnn`, `shallow-cnn`, `logistic`, or `{layers: [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    MainCnn,
    ShallowCnn,
    Logistic,
    Layers(Vec<LayerSpec>),
}

/// The zoo's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    pub dropout: f32,
    pub batchnorm: bool,
    pub channels: Option<Vec<usize>>,
    pub hidden: Option<usize>,
}

/// Why a model cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A layer that does not fit where it stands (`index` counts from 1).
    #[error("layer {index} ({layer}): {problem}")]
    Layer {
        index: usize,
        layer: String,
        problem: String,
    },
    /// The zoo's knobs do not fit the model.
    #[error("{0}")]
    Knobs(String),
    /// The last layer does not give one output per class.
    #[error("{0}")]
    Ending(String),
}

impl ModelSpec {
    /// The layers of this model, with the zoo's knobs applied.
    pub fn layers(&self, k: &Knobs) -> Result<Vec<LayerSpec>, ModelError> {
        use LayerSpec::*;
        let block = |out: usize, kernel: usize, pool: bool| {
            let mut v = vec![Conv {
                out,
                kernel,
                stride: 1,
                padding: kernel / 2,
            }];
            if k.batchnorm {
                v.push(Batchnorm);
            }
            v.push(Relu);
            if pool {
                v.push(Maxpool(2));
            }
            v
        };
        let head = |hidden: usize| {
            let mut v = vec![Flatten, Linear(hidden), Relu];
            if k.dropout > 0.0 {
                v.push(Dropout(k.dropout));
            }
            v.push(Linear(10));
            v
        };
        let channels = |default: &[usize]| -> Result<Vec<usize>, ModelError> {
            match &k.channels {
                None => Ok(default.to_vec()),
                Some(c) if c.len() == default.len() && c.iter().all(|&x| x > 0) => Ok(c.clone()),
                Some(c) => Err(ModelError::Knobs(format!(
                    "channels: this model has {} convolutions, got {c:?}",
                    default.len()
                ))),
            }
        };
        Ok(match self {
            ModelSpec::MainCnn => {
                let c = channels(&[32, 64, 128])?;
                [
                    block(c[0], 3, true),
                    block(c[1], 3, true),
                    block(c[2], 3, false),
                    head(k.hidden.unwrap_or(256)),
                ]
                .concat()
            }
            ModelSpec::ShallowCnn => {
                let c = channels(&[16, 32])?;
                [
                    block(c[0], 5, true),
                    block(c[1], 5, true),
                    head(k.hidden.unwrap_or(128)),
                ]
                .concat()
            }
            ModelSpec::Logistic => vec![Flatten, Linear(10)],
            ModelSpec::Layers(l) => l.clone(),
        })
    }
}

/// A layer with its shapes resolved and its parameters located.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// A convolution fused with the batch norm, ReLU and pooling after it.
    Block {
        w: usize,
        b: usize,
        blk: ops::Block,
    },
    Conv {
        g: Conv,
        w: usize,
        b: usize,
        first: bool,
    },
    Pool(usize),
    Bn {
        gamma: usize,
        beta: usize,
        buf: usize,
    },
    Relu,
    Dropout(f32),
    Flatten,
    Linear {
        o: usize,
        w: usize,
        b: usize,
        first: bool,
    },
}

/// A layer as [`Model::steps`] gives it: geometry resolved, parameters
/// and buffers as indices into [`Model::params`] and [`Model::buffers`]
/// (a batch norm's running mean at `buf`, its variance at `buf + 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Conv {
        g: Conv,
        w: usize,
        b: usize,
    },
    Pool(super::kernels::Pool),
    Bn {
        c: usize,
        gamma: usize,
        beta: usize,
        buf: usize,
    },
    Relu,
    Dropout(f32),
    Flatten {
        c: usize,
        h: usize,
        w: usize,
    },
    Linear {
        o: usize,
        w: usize,
        b: usize,
    },
}

/// A model: its layers, its parameters (trainable) and buffers (batch-norm
/// running statistics).
#[derive(Debug, Clone)]
pub struct Model {
    pub layers: Vec<LayerSpec>,
    /// The layers as ops, and with each convolution block fused.
    plain: Vec<Op>,
    fused: Vec<Op>,
    use_fused: bool,
    pub params: Vec<Tensor1>,
    pub buffers: Vec<Tensor1>,
    pub input: (usize, usize, usize),
    pub classes: usize,
    /// The kernels its products run on (the same bits on either).
    kernels: Family,
}

#[derive(Debug, Clone, Copy)]
enum Shape_ {
    Map(usize, usize, usize),
    Flat(usize),
}

/// A convolution layer's geometry on a `c`×`h`×`w` input, checked:
/// `out` channels, a `kernel`×`kernel` window, `stride`, `padding`.
fn conv_geometry(
    (c, h, w): (usize, usize, usize),
    (out, kernel, stride, padding): (usize, usize, usize, usize),
    family: Family,
) -> Result<Conv, String> {
    if out == 0 || kernel == 0 || stride == 0 {
        return Err("out, kernel and stride must be at least 1".into());
    }
    if h + 2 * padding < kernel || w + 2 * padding < kernel {
        return Err(format!(
            "a {kernel}x{kernel} kernel does not fit a {h}x{w} input with padding {padding}"
        ));
    }
    Ok(Conv {
        c,
        h,
        w,
        o: out,
        k: kernel,
        stride,
        pad: padding,
        family,
    })
}

/// Whether the last layer's shape gives one output per class.
fn ends_in(shape: Shape_, classes: usize) -> Result<(), ModelError> {
    match shape {
        Shape_::Flat(n) if n == classes => Ok(()),
        Shape_::Flat(n) => Err(ModelError::Ending(format!("the last layer gives {n} outputs, but the data has {classes} classes: end with {{linear: {classes}}}"))),
        Shape_::Map(..) => Err(ModelError::Ending(format!("the model must end with flat outputs: add `flatten` and {{linear: {classes}}}"))),
    }
}

/// A batch-norm layer's scale, shift and running statistics (empty when
/// the model is built to be loaded), and its op.
fn batchnorm(
    i: usize,
    c: usize,
    init: bool,
    params: &mut Vec<Tensor1>,
    buffers: &mut Vec<Tensor1>,
) -> Op {
    let filled = |name: String, v: f32| Tensor1 {
        name,
        shape: vec![c],
        data: if init { vec![v; c] } else { Vec::new() },
    };
    params.push(filled(format!("{i}.bn.weight"), 1.0));
    params.push(filled(format!("{i}.bn.bias"), 0.0));
    buffers.push(filled(format!("{i}.bn.running_mean"), 0.0));
    buffers.push(filled(format!("{i}.bn.running_var"), 1.0));
    Op::Bn {
        gamma: params.len() - 2,
        beta: params.len() - 1,
        buf: buffers.len() - 2,
    }
}

impl Model {
    /// Values a training step draws from the device's generator: one per
    /// dropout layer that drops anything.
    pub fn dropout_draws_per_step(&self) -> u64 {
        self.layers
            .iter()
            .filter(|l| matches!(l, LayerSpec::Dropout(p) if *p > 0.0))
            .count() as u64
    }

    /// Resolves shapes and initializes parameters as PyTorch does by default
    /// (uniform ±1/√fan_in for weights and biases; batch norm γ=1, β=0).
    pub fn new(
        layers: Vec<LayerSpec>,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Result<Model, ModelError> {
        Model::build(layers, input, classes, Some(seed))
    }

    /// The model with its shapes resolved and its parameters and buffers
    /// left empty, for a checkpoint to fill.
    pub fn with_shapes(
        layers: Vec<LayerSpec>,
        input: (usize, usize, usize),
        classes: usize,
    ) -> Result<Model, ModelError> {
        Model::build(layers, input, classes, None)
    }

    /// Checks shapes and counts parameters without allocating them.
    pub fn check(
        layers: Vec<LayerSpec>,
        input: (usize, usize, usize),
        classes: usize,
    ) -> Result<usize, ModelError> {
        let m = Model::with_shapes(layers, input, classes)?;
        Ok(m.params
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum())
    }

    fn build(
        layers: Vec<LayerSpec>,
        input: (usize, usize, usize),
        classes: usize,
        seed: Option<u64>,
    ) -> Result<Model, ModelError> {
        let init = seed.is_some();
        let kernels = Family::detected();
        let mut rng = ChaCha8Rng::seed_from_u64(seed.unwrap_or(0));
        let mut params: Vec<Tensor1> = Vec::new();
        let mut buffers: Vec<Tensor1> = Vec::new();
        let mut ops = Vec::new();
        let mut shape = Shape_::Map(input.0, input.1, input.2);
        let mut uniform = |name: String, shape: Vec<usize>, fan_in: usize| {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let n = if init { shape.iter().product() } else { 0 };
            let data = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
            Tensor1 { name, shape, data }
        };
        for (i, l) in layers.iter().enumerate() {
            let at = |problem: String| ModelError::Layer {
                index: i + 1,
                layer: describe(l),
                problem,
            };
            let flat_first = |s: Shape_| match s {
                Shape_::Map(..) => Err(at("needs flat input: add `flatten` before it".into())),
                Shape_::Flat(n) => Ok(n),
            };
            let map_first = |s: Shape_| match s {
                Shape_::Map(c, h, w) => Ok((c, h, w)),
                Shape_::Flat(_) => Err(at(
                    "needs feature maps, but the input is already flat".into()
                )),
            };
            match *l {
                LayerSpec::Conv {
                    out,
                    kernel,
                    stride,
                    padding,
                } => {
                    let (c, h, w) = map_first(shape)?;
                    let spec = (out, kernel, stride, padding);
                    let g = conv_geometry((c, h, w), spec, kernels).map_err(at)?;
                    let fan_in = c * kernel * kernel;
                    params.push(uniform(
                        format!("{i}.conv.weight"),
                        vec![out, c, kernel, kernel],
                        fan_in,
                    ));
                    params.push(uniform(format!("{i}.conv.bias"), vec![out], fan_in));
                    ops.push(Op::Conv {
                        g,
                        w: params.len() - 2,
                        b: params.len() - 1,
                        first: i == 0,
                    });
                    shape = Shape_::Map(out, g.oh(), g.ow());
                }
                LayerSpec::Maxpool(k) => {
                    let (c, h, w) = map_first(shape)?;
                    if k == 0 || h < k || w < k {
                        return Err(at(format!("a {k}x{k} window does not fit a {h}x{w} input")));
                    }
                    ops.push(Op::Pool(k));
                    shape = Shape_::Map(c, h / k, w / k);
                }
                LayerSpec::Batchnorm => {
                    let (c, _, _) = map_first(shape)?;
                    ops.push(batchnorm(i, c, init, &mut params, &mut buffers));
                }
                LayerSpec::Relu => ops.push(Op::Relu),
                LayerSpec::Dropout(p) => {
                    if !(0.0..1.0).contains(&p) {
                        return Err(at(format!("the probability must be in [0, 1), got {p}")));
                    }
                    ops.push(Op::Dropout(p));
                }
                LayerSpec::Flatten => {
                    let (c, h, w) = map_first(shape)?;
                    ops.push(Op::Flatten);
                    shape = Shape_::Flat(c * h * w);
                }
                LayerSpec::Linear(o) => {
                    let n = flat_first(shape)?;
                    if o == 0 {
                        return Err(at("needs at least one output".into()));
                    }
                    params.push(uniform(format!("{i}.linear.weight"), vec![o, n], n));
                    params.push(uniform(format!("{i}.linear.bias"), vec![o], n));
                    ops.push(Op::Linear {
                        o,
                        w: params.len() - 2,
                        b: params.len() - 1,
                        first: i == 0 || (i == 1 && layers[0] == LayerSpec::Flatten),
                    });
                    shape = Shape_::Flat(o);
                }
            }
        }
        ends_in(shape, classes)?;
        Ok(Model {
            layers,
            fused: fuse(ops.clone()),
            plain: ops,
            use_fused: true,
            params,
            buffers,
            input,
            classes,
            kernels,
        })
    }

    /// The layers with their shapes resolved and their parameters located,
    /// for the device-generic path ([`super::generic::Net`]). `input` is
    /// (C, H, W).
    pub fn steps(&self) -> Vec<Step> {
        let (mut c, mut h, mut w) = self.input;
        self.plain
            .iter()
            .map(|op| match *op {
                Op::Conv { g, w: wi, b, .. } => {
                    (c, h, w) = (g.o, g.oh(), g.ow());
                    Step::Conv { g, w: wi, b }
                }
                Op::Pool(k) => {
                    let p = super::kernels::Pool { c, h, w, k };
                    (h, w) = (h / k, w / k);
                    Step::Pool(p)
                }
                Op::Bn { gamma, beta, buf } => Step::Bn {
                    c,
                    gamma,
                    beta,
                    buf,
                },
                Op::Relu => Step::Relu,
                Op::Dropout(q) => Step::Dropout(q),
                Op::Flatten => Step::Flatten { c, h, w },
                Op::Linear { o, w: wi, b, .. } => Step::Linear { o, w: wi, b },
                Op::Block { .. } => unreachable!("the plain ops hold no fused blocks"),
            })
            .collect()
    }

    /// The layers as ops, each convolution fused with what follows it.
    pub(super) fn fused_ops(&self) -> &[Op] {
        &self.fused
    }

    /// Runs the layers one op each instead of fused blocks (the results are
    /// the same; this exists to show it).
    pub fn set_fused(&mut self, on: bool) {
        self.use_fused = on;
    }

    /// The kernels its products run on: what the core and
    /// `FMNIST_PIPE_KERNELS` give, unless [`Self::set_kernels`] chose.
    pub fn kernels(&self) -> Family {
        self.kernels
    }

    /// Runs its products on `family`'s kernels (tests and benchmarks
    /// compare them; the results are the same bits).
    pub fn set_kernels(&mut self, family: Family) {
        self.kernels = family;
        for op in &mut self.plain {
            if let Op::Conv { g, .. } = op {
                g.family = family;
            }
        }
        self.fused = fuse(self.plain.clone());
    }

    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.data.len()).sum()
    }

    /// The parameters as dfdx tensors on `dev`.
    pub fn tensors(&self, dev: &Dev) -> Vec<Param> {
        self.params
            .iter()
            .map(|p| dev.tensor_from_vec(p.data.clone(), (p.data.len(),)))
            .collect()
    }

    /// Logits for a batch. `train`: batch statistics (running ones updated)
    /// and dropout; otherwise running statistics and no dropout.
    pub fn forward<T: Tape<f32, Dev>>(
        &mut self,
        x: T4<T>,
        p: &[Param],
        train: bool,
        threads: usize,
    ) -> T2<T> {
        enum Act<T: Tape<f32, Dev>> {
            Map(T4<T>),
            Flat(T2<T>),
        }
        let mut a = Act::Map(x);
        let ops = if self.use_fused {
            &self.fused
        } else {
            &self.plain
        };
        for op in ops {
            a = match (op, a) {
                (Op::Conv { g, w, b, first }, Act::Map(x)) => {
                    Act::Map(ops::conv2d(x, &p[*w], Some(&p[*b]), *g, !first))
                }
                (Op::Block { w, b, blk }, Act::Map(x)) => Act::Map(ops::conv_block(
                    x,
                    p,
                    *w,
                    *b,
                    *blk,
                    &mut self.buffers,
                    train,
                )),
                (Op::Pool(k), Act::Map(x)) => Act::Map(ops::maxpool2d(x, *k)),
                (Op::Bn { gamma, beta, buf }, Act::Map(x)) => {
                    let (m, v) = self.buffers.split_at_mut(buf + 1);
                    Act::Map(ops::batchnorm2d(
                        x,
                        &p[*gamma],
                        &p[*beta],
                        &mut m[*buf].data,
                        &mut v[0].data,
                        train,
                    ))
                }
                (Op::Relu, Act::Map(x)) => Act::Map(x.relu()),
                (Op::Relu, Act::Flat(x)) => Act::Flat(x.relu()),
                (Op::Dropout(q), a) if !train || *q == 0.0 => a,
                (Op::Dropout(q), Act::Map(x)) => Act::Map(x.dropout(*q)),
                (Op::Dropout(q), Act::Flat(x)) => Act::Flat(x.dropout(*q)),
                (Op::Flatten, Act::Map(x)) => {
                    let (n, c, h, w) = *x.shape();
                    Act::Flat(x.reshape_like(&(n, c * h * w)))
                }
                (Op::Linear { o, w, b, first }, Act::Flat(x)) => {
                    let l = (*o, self.kernels);
                    Act::Flat(ops::linear(x, &p[*w], &p[*b], l, !first, threads))
                }
                _ => unreachable!("shapes are checked in Model::new"),
            };
        }
        match a {
            Act::Flat(x) => x,
            Act::Map(_) => unreachable!("Model::new checks the model ends flat"),
        }
    }
}

/// Fuses each convolution with the batch norm, ReLU and max pool that
/// directly follow it (in that order, each optional).
fn fuse(ops: Vec<Op>) -> Vec<Op> {
    let mut out = Vec::with_capacity(ops.len());
    let mut it = ops.into_iter().peekable();
    while let Some(op) = it.next() {
        let Op::Conv { g, w, b, first } = op else {
            out.push(op);
            continue;
        };
        let mut blk = ops::Block {
            conv: g,
            need_dx: !first,
            bn: None,
            relu: false,
            pool: None,
        };
        if let Some(Op::Bn { gamma, beta, buf }) = it.peek() {
            blk.bn = Some((*gamma, *beta, *buf));
            it.next();
        }
        if let Some(Op::Relu) = it.peek() {
            blk.relu = true;
            it.next();
        }
        if let Some(Op::Pool(k)) = it.peek() {
            blk.pool = Some(*k);
            it.next();
        }
        out.push(Op::Block { w, b, blk });
    }
    out
}

fn describe(l: &LayerSpec) -> String {
    match l {
        LayerSpec::Conv { out, kernel, .. } => format!("conv {kernel}x{kernel} -> {out}"),
        LayerSpec::Maxpool(k) => format!("maxpool {k}"),
        LayerSpec::Batchnorm => "batchnorm".into(),
        LayerSpec::Relu => "relu".into(),
        LayerSpec::Dropout(p) => format!("dropout {p}"),
        LayerSpec::Flatten => "flatten".into(),
        LayerSpec::Linear(o) => format!("linear -> {o}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model's kernels reach every convolution, plain and fused.
    #[test]
    fn the_chosen_kernels_reach_every_convolution() {
        let layers = ModelSpec::MainCnn.layers(&knobs()).unwrap();
        let mut m = Model::new(layers, (1, 28, 28), 10, 1).unwrap();
        assert_eq!(m.kernels(), Family::detected());
        m.set_kernels(Family::AVX2);
        let families = |ops: &[Op]| {
            ops.iter()
                .filter_map(|op| match op {
                    Op::Conv { g, .. } => Some(g.family),
                    Op::Block { blk, .. } => Some(blk.conv.family),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(families(&m.plain), vec![Family::AVX2; 3]);
        assert_eq!(families(m.fused_ops()), vec![Family::AVX2; 3]);
        assert_eq!(m.kernels(), Family::AVX2);
    }

    fn knobs() -> Knobs {
        Knobs {
            dropout: 0.25,
            batchnorm: true,
            channels: None,
            hidden: None,
        }
    }

    #[test]
    fn zoo_parameter_counts() {
        let count = |m: ModelSpec, k: &Knobs| {
            Model::new(m.layers(k).unwrap(), (1, 28, 28), 10, 0)
                .unwrap()
                .parameter_count()
        };
        assert_eq!(count(ModelSpec::MainCnn, &knobs()), 1_701_578);
        assert_eq!(count(ModelSpec::Logistic, &knobs()), 7_850);
        // shallow: 16·25+16 + 32·400+32 + 2·(16+32) + 1568·128+128 + 1290
        assert_eq!(
            count(ModelSpec::ShallowCnn, &knobs()),
            416 + 12_832 + 96 + 200_832 + 1_290
        );
        let no_bn = Knobs {
            batchnorm: false,
            ..knobs()
        };
        assert_eq!(count(ModelSpec::MainCnn, &no_bn), 1_701_578 - 448);
    }

    #[test]
    fn yaml_layers_parse_and_mismatches_name_the_layer() {
        let spec: ModelSpec = serde_json::from_str(
            r#"{"layers": [{"conv": {"out": 8, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"maxpool": 2}, "flatten", {"linear": 10}]}"#,
        )
        .unwrap();
        let layers = spec.layers(&knobs()).unwrap();
        assert_eq!(
            Model::new(layers, (1, 28, 28), 10, 0)
                .unwrap()
                .parameter_count(),
            80 + 16 + 14 * 14 * 8 * 10 + 10
        );
        let e = Model::new(
            vec![
                LayerSpec::Conv {
                    out: 4,
                    kernel: 3,
                    stride: 1,
                    padding: 0,
                },
                LayerSpec::Linear(10),
            ],
            (1, 28, 28),
            10,
            0,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer 2 (linear -> 10): needs flat input: add `flatten` before it"
        );
        assert!(matches!(e, ModelError::Layer { index: 2, .. }), "{e:?}");
        let e = Model::new(
            vec![LayerSpec::Flatten, LayerSpec::Linear(7)],
            (1, 28, 28),
            10,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("gives 7 outputs"), "{e}");
        let e = Model::new(
            vec![LayerSpec::Flatten, LayerSpec::Batchnorm],
            (1, 28, 28),
            10,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("layer 2 (batchnorm)"), "{e}");
        let e = Model::new(
            vec![LayerSpec::Conv {
                out: 4,
                kernel: 40,
                stride: 1,
                padding: 0,
            }],
            (1, 28, 28),
            10,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not fit"), "{e}");
    }
}
