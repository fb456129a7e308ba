//! Weights as safetensors, with the model spec in the metadata so that a
//! checkpoint alone rebuilds its model.

use super::model::{LayerSpec, Model, ModelError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key holding the model spec.
pub const META_KEY: &str = "fmnist-pipe";

/// Why a checkpoint cannot be written or taken up; the caller names the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read: {0}")]
    /// The message holds the I/O error, so it is not also a source.
    Read(std::io::Error),
    #[error("not a valid safetensors file ({0})")]
    NotSafetensors(String),
    #[error("no `{META_KEY}` metadata: not written by fmnist-pipe")]
    NotOurs,
    #[error("bad {META_KEY} metadata: {0}")]
    Metadata(String),
    /// The model its metadata describes cannot be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tensor {name}: {problem}")]
    Tensor { name: String, problem: String },
    #[error("tensor {name} has shape {has:?}, the model needs {needs:?}")]
    Shape {
        name: String,
        has: Vec<usize>,
        needs: Vec<usize>,
    },
    /// Serializing failed (a tensor's bytes do not match its shape).
    #[error("cannot serialize the weights: {0}")]
    Write(String),
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serializes parameters and buffers; `extra` goes into the metadata.
pub fn to_bytes(model: &Model, extra: &[(&str, String)]) -> Result<Vec<u8>, CheckpointError> {
    let write = |e: &dyn std::fmt::Display| CheckpointError::Write(e.to_string());
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .params
        .iter()
        .chain(&model.buffers)
        .map(|t| (t.name.clone(), t.shape.clone(), bytes(&t.data)))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| write(&e))?;
    // One metadata entry holding ordered JSON: safetensors writes its
    // metadata map in hash order, which would make equal weights give
    // different files (and rerun everything downstream).
    let mut info = serde_json::Map::new();
    info.insert(
        "layers".into(),
        serde_json::to_value(&model.layers).map_err(|e| write(&e))?,
    );
    info.insert(
        "input".into(),
        serde_json::json!([model.input.0, model.input.1, model.input.2]),
    );
    info.insert("classes".into(), model.classes.into());
    info.insert("parameters".into(), model.parameter_count().into());
    for (k, v) in extra {
        info.insert(k.to_string(), v.clone().into());
    }
    let mut meta = HashMap::new();
    meta.insert(
        META_KEY.to_string(),
        serde_json::Value::Object(info).to_string(),
    );
    safetensors::serialize(views, &Some(meta)).map_err(|e| write(&e))
}

/// Rebuilds a model from a checkpoint; errors say what is wrong with it
/// (the caller names the file).
pub fn load(path: &Path) -> Result<Model, CheckpointError> {
    let raw = std::fs::read(path).map_err(CheckpointError::Read)?;
    let st = SafeTensors::deserialize(&raw)
        .map_err(|e| CheckpointError::NotSafetensors(e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(&raw)
        .map_err(|e| CheckpointError::NotSafetensors(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Info {
        layers: Vec<LayerSpec>,
        input: (usize, usize, usize),
        classes: usize,
    }
    let info = meta.get(META_KEY).ok_or(CheckpointError::NotOurs)?;
    let info: Info =
        serde_json::from_str(info).map_err(|e| CheckpointError::Metadata(e.to_string()))?;
    let mut model = Model::with_shapes(info.layers, info.input, info.classes)?;
    for t in model.params.iter_mut().chain(model.buffers.iter_mut()) {
        let v = st.tensor(&t.name).map_err(|e| CheckpointError::Tensor {
            name: t.name.clone(),
            problem: e.to_string(),
        })?;
        if v.dtype() != Dtype::F32 || v.shape() != t.shape.as_slice() {
            return Err(CheckpointError::Shape {
                name: t.name.clone(),
                has: v.shape().to_vec(),
                needs: t.shape.clone(),
            });
        }
        t.data = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::model::{Knobs, ModelSpec};

    #[test]
    fn round_trip_and_damage() {
        let k = Knobs {
            dropout: 0.5,
            batchnorm: true,
            channels: Some(vec![4, 8]),
            hidden: Some(16),
        };
        let mut m = Model::new(
            ModelSpec::ShallowCnn.layers(&k).unwrap(),
            (1, 28, 28),
            10,
            3,
        )
        .unwrap();
        m.buffers[0].data[1] = 0.25;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.safetensors");
        std::fs::write(&p, to_bytes(&m, &[("seed", "3".into())]).unwrap()).unwrap();
        let back = load(&p).unwrap();
        // The same model serializes to the same bytes.
        assert_eq!(
            to_bytes(&m, &[("seed", "3".into())]).unwrap(),
            std::fs::read(&p).unwrap()
        );
        assert_eq!(back.params, m.params);
        assert_eq!(back.buffers, m.buffers);
        assert_eq!(back.layers, m.layers);
        let raw = std::fs::read(&p).unwrap();
        std::fs::write(&p, &raw[..raw.len() - 100]).unwrap();
        let e = load(&p).unwrap_err();
        assert!(matches!(e, CheckpointError::NotSafetensors(_)), "{e:?}");
        assert!(
            e.to_string().contains("not a valid safetensors file"),
            "{e}"
        );
    }
}
