//! Weights as safetensors, with the model spec in the metadata so that a
//! checkpoint alone rebuilds its model.

use super::model::{LayerSpec, Model};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key holding the model spec.
pub const META_KEY: &str = "fmnist-pipe";

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serializes parameters and buffers; `extra` goes into the metadata.
pub fn to_bytes(model: &Model, extra: &[(&str, String)]) -> Result<Vec<u8>, String> {
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
        .map_err(|e| e.to_string())?;
    // One metadata entry holding ordered JSON: safetensors writes its
    // metadata map in hash order, which would make equal weights give
    // different files (and rerun everything downstream).
    let mut info = serde_json::Map::new();
    info.insert(
        "layers".into(),
        serde_json::to_value(&model.layers).map_err(|e| e.to_string())?,
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
    safetensors::serialize(views, &Some(meta)).map_err(|e| e.to_string())
}

/// Rebuilds a model from a checkpoint; errors say what is wrong with it
/// (the caller names the file).
pub fn load(path: &Path) -> Result<Model, String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let st = SafeTensors::deserialize(&raw)
        .map_err(|e| format!("not a valid safetensors file ({e})"))?;
    let (_, meta) = SafeTensors::read_metadata(&raw).map_err(|e| e.to_string())?;
    let meta = meta.metadata().clone().unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Info {
        layers: Vec<LayerSpec>,
        input: (usize, usize, usize),
        classes: usize,
    }
    let info = meta
        .get(META_KEY)
        .ok_or_else(|| format!("no `{META_KEY}` metadata: not written by fmnist-pipe"))?;
    let info: Info =
        serde_json::from_str(info).map_err(|e| format!("bad {META_KEY} metadata: {e}"))?;
    let mut model = Model::with_shapes(info.layers, info.input, info.classes)?;
    for t in model.params.iter_mut().chain(model.buffers.iter_mut()) {
        let v = st
            .tensor(&t.name)
            .map_err(|e| format!("tensor {}: {e}", t.name))?;
        if v.dtype() != Dtype::F32 || v.shape() != t.shape.as_slice() {
            return Err(format!(
                "tensor {} has shape {:?}, the model needs {:?}",
                t.name,
                v.shape(),
                t.shape
            ));
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
        assert!(load(&p)
            .unwrap_err()
            .contains("not a valid safetensors file"));
    }
}
