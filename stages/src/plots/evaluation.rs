//! An evaluation's pictures: its confusion matrix, ROC curves, training
//! curves and image grids.

use super::*;
use crate::contract::{EpochRecord, EvalReport};
use crate::metrics::argmax;
use learn::data::dataset::{Dataset, Split};
use std::path::Path;

use super::draw::*;

/// An evaluation's pictures.
pub fn evaluation(
    dir: &Path,
    r: &EvalReport,
    roc: &[Vec<(f64, f64)>],
    probs: &[f32],
    data: &Dataset,
    test: &Split,
) -> Drawn {
    if !font_ready() {
        return Ok(());
    }
    let names: Vec<String> = r.metrics.per_class.iter().map(|c| c.name.clone()).collect();
    confusion(dir, r, &names)?;
    rocs(dir, r, roc, &names)?;
    if !r.history.is_empty() {
        curves(dir, r)?;
    }
    predictions(dir, r, probs, (data, test))
}

/// The confusion matrix.
fn confusion(dir: &Path, r: &EvalReport, names: &[String]) -> Drawn {
    let conf: Vec<Vec<f64>> = r
        .metrics
        .confusion
        .iter()
        .map(|row| row.iter().map(|&v| v as f64).collect())
        .collect();
    let title = format!(
        "{}: confusion matrix (rows: true, columns: predicted)",
        r.stage
    );
    both!(dir, "confusion", (900, 800), |root| heatmap(
        root,
        &title,
        &conf,
        names,
        names,
        &|v| format!("{v:.0}"),
        true
    ));
    Ok(())
}

/// One ROC curve per class, one against the rest.
fn rocs(dir: &Path, r: &EvalReport, roc: &[Vec<(f64, f64)>], names: &[String]) -> Drawn {
    let series: Vec<Series> = roc
        .iter()
        .enumerate()
        .map(|(c, pts)| Series {
            name: format!(
                "{} (AUC {})",
                names[c],
                auc_text(r.metrics.per_class[c].auc)
            ),
            points: pts.clone(),
            color: palette(c),
            dashed: false,
            band: Vec::new(),
        })
        .collect();
    let title = format!(
        "{}: ROC curves, one vs rest (macro AUC {})",
        r.stage,
        auc_text(r.metrics.macro_auc)
    );
    both!(dir, "roc", (900, 700), |root| lines(
        root,
        &title,
        ("false positive rate", 0.0, 1.0),
        ("true positive rate", 0.0, 1.0),
        &series
    ));
    Ok(())
}

/// Loss and accuracy per epoch, training and validation.
fn curves(dir: &Path, r: &EvalReport) -> Drawn {
    let epochs = r.history.len() as f64;
    let pts = |f: &dyn Fn(&EpochRecord) -> f64| {
        r.history
            .iter()
            .map(|h| (h.epoch as f64, f(h)))
            .collect::<Vec<_>>()
    };
    let loss = [
        Series {
            name: "train loss".into(),
            points: pts(&|h| h.train_loss),
            color: palette(0),
            dashed: false,
            band: Vec::new(),
        },
        Series {
            name: "validation loss".into(),
            points: pts(&|h| h.val_loss),
            color: palette(1),
            dashed: true,
            band: Vec::new(),
        },
    ];
    let top = r
        .history
        .iter()
        .map(|h| h.train_loss.max(h.val_loss))
        .fold(0.0, f64::max)
        * 1.1;
    let title = format!("{}: loss per epoch", r.stage);
    both!(dir, "loss", (800, 500), |root| lines(
        root,
        &title,
        ("epoch", 1.0, epochs.max(2.0)),
        ("loss", 0.0, top.max(0.1)),
        &loss
    ));
    let acc = [
        Series {
            name: "train accuracy".into(),
            points: pts(&|h| h.train_acc),
            color: palette(0),
            dashed: false,
            band: Vec::new(),
        },
        Series {
            name: "validation accuracy".into(),
            points: pts(&|h| h.val_acc),
            color: palette(1),
            dashed: true,
            band: Vec::new(),
        },
    ];
    let low = r
        .history
        .iter()
        .map(|h| h.train_acc.min(h.val_acc))
        .fold(1.0, f64::min);
    let title = format!("{}: accuracy per epoch", r.stage);
    both!(dir, "accuracy", (800, 500), |root| lines(
        root,
        &title,
        ("epoch", 1.0, epochs.max(2.0)),
        ("accuracy", (low - 0.05).max(0.0), 1.0),
        &acc
    ));
    Ok(())
}

/// Sample test images with their predictions, and misclassified ones.
fn predictions(
    dir: &Path,
    r: &EvalReport,
    probs: &[f32],
    (data, test): (&Dataset, &Split),
) -> Drawn {
    let k = r.metrics.per_class.len();
    let preds: Vec<usize> = probs.chunks(k).map(argmax).collect();
    let samples: Vec<(usize, usize)> = (0..test.len())
        .step_by((test.len() / 24).max(1))
        .take(24)
        .map(|i| (i, preds[i]))
        .collect();
    let title = format!("{}: sample predictions (true / predicted)", r.stage);
    both!(dir, "samples", (900, 700), |root| grid(
        root, &title, data, test, &samples
    ));
    let wrong: Vec<(usize, usize)> = (0..test.len())
        .filter(|&i| preds[i] != test.labels[i] as usize)
        .take(24)
        .map(|i| (i, preds[i]))
        .collect();
    let title = format!("{}: misclassified (true / predicted)", r.stage);
    both!(dir, "misclassified", (900, 700), |root| grid(
        root, &title, data, test, &wrong
    ));
    Ok(())
}
